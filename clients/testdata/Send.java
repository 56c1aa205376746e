import java.io.FileInputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.util.Date;
import java.util.Properties;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

import javax.mail.Message;
import javax.mail.Session;
import javax.mail.Transport;
import javax.mail.internet.InternetAddress;
import javax.mail.internet.MimeBodyPart;
import javax.mail.internet.MimeMessage;
import javax.mail.internet.MimeMultipart;

/**
 * Sends one message the way a Java application (Ignition's email profiles)
 * does. Compiled against JavaMail 1.6 (javax.mail) as is, and against
 * Jakarta Mail 2.0 with "javax.mail" replaced by "jakarta.mail".
 *
 * Arguments: host port security(plain|starttls|tls) mechanism(""|PLAIN|LOGIN)
 * user password from to subject bodyFile attachmentFile("") caFile
 */
public class Send {
    public static void main(String[] a) throws Exception {
        String host = a[0], port = a[1], security = a[2], mech = a[3], user = a[4], pass = a[5];
        String from = a[6], to = a[7], subject = a[8], bodyFile = a[9], attachment = a[10], caFile = a[11];

        Properties p = new Properties();
        p.put("mail.smtp.host", host);
        p.put("mail.smtp.port", port);
        p.put("mail.smtp.connectiontimeout", "30000");
        p.put("mail.smtp.timeout", "60000");
        if (!security.equals("plain")) {
            // Trust the test CA only, and check the name in the certificate.
            p.put("mail.smtp.ssl.socketFactory", trusting(caFile).getSocketFactory());
            p.put("mail.smtp.ssl.checkserveridentity", "true");
            if (security.equals("tls")) {
                p.put("mail.smtp.ssl.enable", "true");
            } else {
                p.put("mail.smtp.starttls.enable", "true");
                p.put("mail.smtp.starttls.required", "true");
            }
        }
        if (!mech.isEmpty()) {
            p.put("mail.smtp.auth", "true");
            p.put("mail.smtp.auth.mechanisms", mech);
        }
        Session session = Session.getInstance(p);

        MimeMessage m = new MimeMessage(session);
        m.setFrom(new InternetAddress(from));
        m.setRecipients(Message.RecipientType.TO, InternetAddress.parse(to));
        m.setSubject(subject);
        m.setSentDate(new Date());
        String text = new String(Files.readAllBytes(Paths.get(bodyFile)), StandardCharsets.UTF_8);
        if (attachment.isEmpty()) {
            m.setText(text, "UTF-8");
        } else {
            MimeBodyPart textPart = new MimeBodyPart();
            textPart.setText(text, "UTF-8");
            MimeBodyPart filePart = new MimeBodyPart();
            filePart.attachFile(attachment, "application/octet-stream", "base64");
            m.setContent(new MimeMultipart(textPart, filePart));
        }
        if (mech.isEmpty()) {
            Transport.send(m);
        } else {
            Transport.send(m, user, pass);
        }
        System.out.println("sent");
    }

    static SSLContext trusting(String caFile) throws Exception {
        KeyStore ks = KeyStore.getInstance(KeyStore.getDefaultType());
        ks.load(null, null);
        try (FileInputStream in = new FileInputStream(caFile)) {
            ks.setCertificateEntry("test-ca", CertificateFactory.getInstance("X.509").generateCertificate(in));
        }
        TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(ks);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        return ctx;
    }
}
