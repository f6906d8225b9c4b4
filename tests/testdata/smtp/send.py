#!/usr/bin/env python3
"""Send one message with Python's smtplib, for tests/smtp_test.go.

The message file is sent as bytes, exactly (smtplib only dot-stuffs it and
adds the final "."). The reply to the end of data is printed as
"DATA <code> <text>"; the exit status is 0 only when it is a 250.
Any other refusal is printed as "<STEP> <code> <text>" with exit status 1.
"""
import argparse
import smtplib
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True, help="host:port")
    p.add_argument("--helo", required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--mail-opt", action="append", default=[])
    p.add_argument("--message", required=True, help="file sent as is")
    a = p.parse_args()
    host, port = a.server.rsplit(":", 1)
    with open(a.message, "rb") as f:
        msg = f.read()
    s = smtplib.SMTP(host, int(port), local_hostname=a.helo, timeout=30)
    code, resp = s.ehlo()
    if code != 250:
        print("EHLO", code, resp.decode("utf-8", "replace"))
        return 1
    code, resp = s.mail(a.sender, a.mail_opt)
    if code != 250:
        print("MAIL", code, resp.decode("utf-8", "replace"))
        return 1
    for r in a.to:
        code, resp = s.rcpt(r)
        if code != 250:
            print("RCPT", code, resp.decode("utf-8", "replace"))
            return 1
    code, resp = s.data(msg)
    print("DATA", code, resp.decode("utf-8", "replace"))
    s.quit()
    return 0 if code == 250 else 1


if __name__ == "__main__":
    sys.exit(main())
