"""Test PKI made with the openssl CLI: a CA, a server certificate for localhost/127.0.0.1 signed
by it, and an unrelated second CA (for "wrong CA" tests)."""

import os
import subprocess


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj",
         f"/CN=tollgate test {name}", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


def make_leaf(d, name, ca, sans=("DNS:localhost", "IP:127.0.0.1"), cn="localhost"):
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                f"subjectAltName={','.join(sans)}\n")
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
         f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", os.path.basename(ca[0]), "-CAkey",
         os.path.basename(ca[1]), "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
         "-extfile", ext, cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


class Pki:
    def __init__(self, d):
        os.makedirs(d, exist_ok=True)
        self.dir = d
        self.ca = make_ca(d, "ca")
        self.other_ca = make_ca(d, "other-ca")
        self.server = make_leaf(d, "server", self.ca)

    @property
    def ca_pem(self):
        return self.ca[0]

    @property
    def other_ca_pem(self):
        return self.other_ca[0]

    @property
    def cert(self):
        return self.server[0]

    @property
    def key(self):
        return self.server[1]
