#!/usr/bin/env python3
"""Mail-access benchmark driver (make bench, contrib/bench-mailaccess.sh).

Builds a Maildir of N messages (make), or times the phases of a POP3 or IMAP
client against a server (pop3, imap) and prints one JSON object per run.

  bench_mail.py make DIR N                 a Maildir with N messages
  bench_mail.py pop3 HOST PORT USER PASS   login, UIDL, RETR of every message
  bench_mail.py imap HOST PORT USER PASS   SELECT, FETCH 1:* (FLAGS ENVELOPE),
                                           FETCH of 1,000 full bodies, SEARCH,
                                           STORE of a flag on all, SELECT again

Plain TCP on loopback: both servers allow it there, so TLS cost is left out
of a comparison of the mailbox stores.
"""
import imaplib
import json
import os
import poplib
import random
import sys
import time


def make(top, n):
    for d in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(top, d), exist_ok=True)
    rnd = random.Random(1)
    words = ("mail server queue delivery maildir postern dovecot imap pop3 "
             "message header body test bench sender recipient").split()
    base = 1700000000
    for i in range(n):
        body = []
        size = 0
        while size < 3500:
            line = " ".join(rnd.choice(words) for _ in range(10))
            body.append(line)
            size += len(line) + 1
        msg = ("Return-Path: <sender%d@example.org>\n"
               "Delivered-To: demo@example.test\n"
               "From: Sender %d <sender%d@example.org>\n"
               "To: Demo <demo@example.test>\n"
               "Subject: bench message %d\n"
               "Date: Thu, 01 Jan 2026 00:00:00 +0000\n"
               "Message-ID: <bench%d@example.org>\n"
               "\n" % (i % 97, i, i % 97, i, i)) + "\n".join(body) + "\n"
        data = msg.encode()
        vsize = len(data) + data.count(b"\n")
        name = "%d.M%dP1.bench,S=%d,W=%d:2," % (base + i, i, len(data), vsize)
        with open(os.path.join(top, "cur", name), "wb") as f:
            f.write(data)
        os.utime(os.path.join(top, "cur", name), (base + i, base + i))


def pop3(host, port, user, password):
    out = {}
    t0 = time.monotonic()
    p = poplib.POP3(host, int(port), timeout=600)
    p.user(user)
    p.pass_(password)
    out["login_s"] = time.monotonic() - t0
    t = time.monotonic()
    _, lines, _ = p.uidl()
    out["uidl_s"] = time.monotonic() - t
    out["messages"] = len(lines)
    t = time.monotonic()
    total = 0
    for i in range(1, len(lines) + 1):
        _, body, octets = p.retr(i)
        total += octets
    out["retr_all_s"] = time.monotonic() - t
    out["bytes"] = total
    p.quit()
    out["total_s"] = time.monotonic() - t0
    return out


def imap(host, port, user, password):
    out = {}
    t0 = time.monotonic()
    m = imaplib.IMAP4(host, int(port), timeout=600)
    m.login(user, password)
    out["login_s"] = time.monotonic() - t0
    t = time.monotonic()
    typ, data = m.select("INBOX")
    out["select_s"] = time.monotonic() - t
    n = int(data[0])
    out["messages"] = n
    t = time.monotonic()
    typ, data = m.fetch("1:*", "(FLAGS ENVELOPE)")
    out["fetch_envelope_s"] = time.monotonic() - t
    t = time.monotonic()
    typ, data = m.fetch("1:%d" % min(1000, n), "(BODY.PEEK[])")
    out["fetch_1000_bodies_s"] = time.monotonic() - t
    t = time.monotonic()
    typ, data = m.search(None, "BODY", "postern", "SUBJECT", "\"message 77\"")
    out["search_s"] = time.monotonic() - t
    t = time.monotonic()
    typ, data = m.store("1:*", "+FLAGS.SILENT", "(\\Flagged)")
    out["store_all_s"] = time.monotonic() - t
    m.close()
    t = time.monotonic()
    m.select("INBOX")
    out["reselect_s"] = time.monotonic() - t
    # Put the flags back, so that every run starts from the same mailbox.
    m.store("1:*", "-FLAGS.SILENT", "(\\Flagged)")
    m.logout()
    out["total_s"] = time.monotonic() - t0
    return out


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) == 6 and sys.argv[1] in ("pop3", "imap"):
        fn = pop3 if sys.argv[1] == "pop3" else imap
        print(json.dumps(fn(*sys.argv[2:])))
        return
    sys.stderr.write(__doc__)
    sys.exit(64)


if __name__ == "__main__":
    main()
