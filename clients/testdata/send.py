"""Sends one message with Python's smtplib, as scripts and cron jobs do.

Arguments: host port security(plain|starttls|tls) mechanism(""|PLAIN|LOGIN)
user password from to subject bodyFile attachmentFile("") caFile
"""
import os
import smtplib
import ssl
import sys
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

host, port, security, mech, user, password, sender, to, subject, body_file, attachment, ca_file = sys.argv[1:13]

msg = EmailMessage()
msg["From"] = sender
msg["To"] = to
msg["Subject"] = subject
msg["Date"] = formatdate(localtime=True)
msg["Message-ID"] = make_msgid()
with open(body_file, encoding="utf-8") as f:
    msg.set_content(f.read())
if attachment:
    with open(attachment, "rb") as f:
        msg.add_attachment(f.read(), maintype="application", subtype="octet-stream",
                           filename=os.path.basename(attachment))

ctx = ssl.create_default_context(cafile=ca_file)
if security == "tls":
    s = smtplib.SMTP_SSL(host, int(port), timeout=60, context=ctx)
else:
    s = smtplib.SMTP(host, int(port), timeout=60)
s.ehlo()
if security == "starttls":
    s.starttls(context=ctx)
    s.ehlo()
if mech:
    # login() picks a mechanism itself; auth() uses the one asked for.
    s.user, s.password = user, password
    if mech == "PLAIN":
        s.auth("PLAIN", s.auth_plain)
    else:
        s.auth("LOGIN", s.auth_login, initial_response_ok=False)
s.send_message(msg)
s.quit()
print("sent")
