#!/usr/bin/env python3
"""Submit one message with Python's smtplib over TLS with SMTP AUTH, for
tests/submission_test.go.

--tls starttls connects in the clear and calls starttls(); --tls implicit
uses SMTP_SSL (RFC 8314). Both verify the server's certificate against
--cafile (and its name or address), as a mail client must. The password is
read from the first line of stdin, so that it is never on a command line.
Without --mech, login() picks the mechanism as a mail client would (PLAIN
when offered); --mech LOGIN or PLAIN forces one through SMTP.auth().

The message file is sent as bytes, exactly. Output, one line each:
    TLS <protocol version> <cipher>
    AUTH <code> <text>
    DATA <code> <text>
The exit status is 0 only when the end of data got a 250. A refusal at any
step is printed as "<STEP> <code> <text>" and ends the script with status 1.
"""
import argparse
import smtplib
import ssl
import sys


def text(resp):
    if isinstance(resp, bytes):
        return resp.decode("utf-8", "replace")
    return str(resp)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, help="host:port")
    p.add_argument("--tls", choices=["starttls", "implicit"], required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--helo", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--mech", choices=["PLAIN", "LOGIN"])
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--message", required=True, help="file sent as is")
    a = p.parse_args()
    password = sys.stdin.readline().rstrip("\n")
    host, port = a.server.rsplit(":", 1)
    with open(a.message, "rb") as f:
        msg = f.read()
    ctx = ssl.create_default_context(cafile=a.cafile)
    if a.tls == "implicit":
        s = smtplib.SMTP_SSL(host, int(port), local_hostname=a.helo, timeout=30, context=ctx)
    else:
        s = smtplib.SMTP(host, int(port), local_hostname=a.helo, timeout=30)
        code, resp = s.ehlo()
        if code != 250:
            print("EHLO", code, text(resp))
            return 1
        code, resp = s.starttls(context=ctx)
        if code != 220:
            print("STARTTLS", code, text(resp))
            return 1
    print("TLS", s.sock.version(), s.sock.cipher()[0])
    try:
        if a.mech:
            s.ehlo_or_helo_if_needed()
            s.user, s.password = a.user, password
            code, resp = s.auth(a.mech, getattr(s, "auth_" + a.mech.lower()))
        else:
            code, resp = s.login(a.user, password)
    except smtplib.SMTPResponseException as e:
        print("AUTH", e.smtp_code, text(e.smtp_error))
        return 1
    print("AUTH", code, text(resp))
    code, resp = s.mail(a.sender)
    if code != 250:
        print("MAIL", code, text(resp))
        return 1
    for r in a.to:
        code, resp = s.rcpt(r)
        if code != 250:
            print("RCPT", code, text(resp))
            return 1
    code, resp = s.data(msg)
    print("DATA", code, text(resp))
    s.quit()
    return 0 if code == 250 else 1


if __name__ == "__main__":
    sys.exit(main())
