"""Certificates made with the openssl CLI: private CAs and what they sign."""

import subprocess


def openssl(*args):
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(d, name="ca"):
    """A self-signed CA (openssl CLI): its certificate, its key beside it
    (`name`.pem, `name`.key in `d`)."""
    ca = d / f"{name}.pem"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=pg_webhook test {name}",
            "-keyout", d / f"{name}.key", "-out", ca)
    return ca


def private_ca(d, name="ca"):
    """A CA and a certificate for localhost signed by it (openssl CLI):
    (CA certificate, (leaf certificate, leaf key)). `name` keeps several
    CAs apart in one directory."""
    ca = make_ca(d, name)
    leaf = issue(d, ca, f"{name}-localhost", "/CN=localhost", "rsa-pkcs8",
                 "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    return ca, (str(leaf[0]), str(leaf[1]))


# How each kind of private key is made, and the PEM label it comes out with.
KEY_KINDS = {
    "rsa-pkcs8": (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "PRIVATE KEY"),
    "rsa-pkcs1": (["genrsa", "-traditional", "2048"], "RSA PRIVATE KEY"),
    "ec-pkcs8": (["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"], "PRIVATE KEY"),
    "ec-sec1": (["ecparam", "-name", "prime256v1", "-genkey", "-noout"], "EC PRIVATE KEY"),
}


def issue(d, ca, name, subject, key_kind="rsa-pkcs8", ext=None):
    """A certificate for `subject` signed by the CA `ca` (its key beside it,
    as private_ca leaves it), with a fresh key of `key_kind`: (cert, key)."""
    gen, label = KEY_KINDS[key_kind]
    key, csr, cert, extfile = (d / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
    openssl(gen[0], "-out", key, *gen[1:])
    assert key.read_text().startswith(f"-----BEGIN {label}-----"), key.read_text()[:40]
    openssl("req", "-new", "-key", key, "-subj", subject, "-out", csr)
    extfile.write_text(ext or "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca.with_suffix(".key"), "-CAcreateserial",
            "-days", "2", "-extfile", extfile, "-out", cert)
    return cert, key
