// Sends one message with nodemailer, as Node.js applications do.
//
// Arguments: host port security(plain|starttls|tls) mechanism(""|PLAIN|LOGIN)
// user password from to subject bodyFile attachmentFile("") caFile
'use strict';
const fs = require('fs');
const nodemailer = require('nodemailer');

const [host, port, security, mech, user, pass, from, to, subject, bodyFile, attachment, caFile] = process.argv.slice(2);

const options = {
  host,
  port: Number(port),
  secure: security === 'tls',
  // nodemailer upgrades to STARTTLS whenever it is offered unless told not to.
  ignoreTLS: security === 'plain',
  requireTLS: security === 'starttls',
  tls: { ca: fs.readFileSync(caFile) },
  connectionTimeout: 30000,
  socketTimeout: 60000,
};
if (mech) {
  options.auth = { user, pass };
  options.authMethod = mech;
}
const transport = nodemailer.createTransport(options);
transport.sendMail({
  from,
  to,
  subject,
  text: fs.readFileSync(bodyFile, 'utf8'),
  attachments: attachment ? [{ path: attachment, contentType: 'application/octet-stream' }] : [],
}).then(() => {
  console.log('sent');
}, (err) => {
  console.error(err);
  process.exit(1);
});
