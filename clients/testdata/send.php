<?php
// Sends one message with PHPMailer (Debian's libphp-phpmailer), as PHP
// web applications do.
//
// Arguments: host port security(plain|starttls|tls) mechanism(""|PLAIN|LOGIN)
// user password from to subject bodyFile attachmentFile("") caFile
require '/usr/share/php/libphp-phpmailer/autoload.php';

use PHPMailer\PHPMailer\PHPMailer;

[, $host, $port, $security, $mech, $user, $password, $from, $to, $subject, $bodyFile, $attachment, $caFile] = $argv;

$m = new PHPMailer(true);
$m->isSMTP();
$m->Host = $host;
$m->Port = (int) $port;
$m->Timeout = 60;
$m->CharSet = PHPMailer::CHARSET_UTF8;
// PHPMailer upgrades to STARTTLS whenever it is offered unless told not to.
$m->SMTPAutoTLS = false;
if ($security === 'starttls') {
    $m->SMTPSecure = PHPMailer::ENCRYPTION_STARTTLS;
} elseif ($security === 'tls') {
    $m->SMTPSecure = PHPMailer::ENCRYPTION_SMTPS;
}
$m->SMTPOptions = ['ssl' => ['cafile' => $caFile, 'verify_peer' => true, 'verify_peer_name' => true]];
if ($mech !== '') {
    $m->SMTPAuth = true;
    $m->AuthType = $mech;
    $m->Username = $user;
    $m->Password = $password;
}
$m->setFrom($from);
$m->addAddress($to);
$m->Subject = $subject;
$m->Body = file_get_contents($bodyFile);
if ($attachment !== '') {
    $m->addAttachment($attachment, basename($attachment), PHPMailer::ENCODING_BASE64, 'application/octet-stream');
}
$m->send();
echo "sent\n";
