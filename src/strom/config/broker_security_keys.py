"""Broker keys of TLS, SASL, authorization, delegation tokens and the password encoder.

Kafka changes the TLS keystore/truststore keys and the listener-level SASL keys at run time only
under a `listener.name.<listener>.` prefix (see broker_keys.listener_base); the bare keys are the
static defaults of every listener.
"""

from __future__ import annotations

from strom.config.definitions import ConfigDef
from strom.config.shorthand import LS, PB, SH, B, C, D, I, L, P, S, define
from strom.config.validators import ListOf, OneOf, at_least

TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")

# Kafka's class names of its ACL authorizers and Strom's own: each selects the ACL authorizer.
AUTHORIZER_CLASS_NAMES = (
    "kafka.security.authorizer.AclAuthorizer",
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "strom.security.authorizer.AclAuthorizer",
)

DEFAULT_PRINCIPAL_BUILDER = (
    "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"
)

# fmt: off
BROKER_SECURITY_DEFS: list[ConfigDef] = [
    define("ssl.protocol", S, "TLSv1.3", "Java's SSLContext protocol; the versions used are "
       "ssl.enabled.protocols.", mode=PB, unused=True),
    define("ssl.provider", S, None, "Security provider of TLS connections.",
       mode=PB, unused=True),
    define("ssl.enabled.protocols", LS, "TLSv1.2,TLSv1.3", "TLS versions accepted.",
       ListOf(TLS_VERSIONS), mode=PB),
    define("ssl.cipher.suites", LS, "", "Cipher suites allowed for TLS 1.2, by their IANA "
       "names (TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) or OpenSSL's; empty: Python's defaults. "
       "TLS 1.3 suites cannot be restricted.", mode=PB),
    define("ssl.keystore.type", S, "JKS", "Format of the key store: PKCS12 or PEM. A file of "
       "type JKS is read as PKCS12 when it is one (Java's keytool writes PKCS12 by default); a "
       "real JKS store must be converted to PKCS12 first.",
       OneOf(("JKS", "PKCS12", "PEM"), case_sensitive=False), mode=PB),
    define("ssl.keystore.location", S, None, "The key store file (PKCS12, or PEM with the "
       "private key and the certificate chain).", mode=PB),
    define("ssl.keystore.password", P, None, "Password of the key store file.", mode=PB),
    define("ssl.key.password", P, None, "Password of the private key (PKCS12: tried after the "
       "store password; PEM: the encrypted key's password).", mode=PB),
    define("ssl.keystore.key", P, None, "The private key in PEM (PKCS#8) form, with "
       "ssl.keystore.type=PEM and ssl.keystore.certificate.chain.", mode=PB),
    define("ssl.keystore.certificate.chain", P, None, "The certificate chain in PEM form, with "
       "ssl.keystore.type=PEM and ssl.keystore.key.", mode=PB),
    define("ssl.truststore.type", S, "JKS", "Format of the trust store: PKCS12 or PEM (JKS as "
       "for ssl.keystore.type).", OneOf(("JKS", "PKCS12", "PEM"), case_sensitive=False),
       mode=PB),
    define("ssl.truststore.location", S, None, "The trust store file: the certificates of the "
       "authorities whose client (and broker) certificates are trusted; unset: the system's.",
       mode=PB),
    define("ssl.truststore.password", P, None, "Password of the trust store file.", mode=PB),
    define("ssl.truststore.certificates", P, None, "Trusted certificates in PEM form, with "
       "ssl.truststore.type=PEM.", mode=PB),
    define("ssl.keymanager.algorithm", S, "SunX509", "Key manager factory algorithm.",
       mode=PB, unused=True),
    define("ssl.trustmanager.algorithm", S, "PKIX", "Trust manager factory algorithm.",
       mode=PB, unused=True),
    define("ssl.endpoint.identification.algorithm", S, "https", "https: a broker connecting "
       "to another checks that the certificate names the host it connected to; empty: no "
       "check.", mode=PB),
    define("ssl.secure.random.implementation", S, None, "SecureRandom implementation for TLS.",
       mode=PB, unused=True),
    define("ssl.engine.factory.class", C, None, "Plugin that creates TLS engines.",
       mode=PB, unused=True),
    define("ssl.client.auth", S, "none", "Whether TLS clients must (required), may "
       "(requested) or need not (none) present a certificate.",
       OneOf(("required", "requested", "none")), mode=PB),
    define("ssl.principal.mapping.rules", S, "DEFAULT", "Rules (RULE:pattern/replacement/[LU], "
       "DEFAULT) that turn a client certificate's distinguished name into a principal."),
    define("ssl.allow.dn.changes", B, False, "Allow a reloaded keystore certificate to have "
       "another distinguished name."),
    define("ssl.allow.san.changes", B, False, "Allow a reloaded keystore certificate to have "
       "other subject alternative names."),
    define("sasl.enabled.mechanisms", LS, "GSSAPI", "SASL mechanisms offered on SASL listeners: "
       "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER (Kafka's default GSSAPI needs "
       "Kerberos, which Strom does not offer).",
       mode=PB),
    define("sasl.mechanism.inter.broker.protocol", S, "GSSAPI", "SASL mechanism brokers use "
       "with each other.", mode=PB),
    define("sasl.jaas.config", P, None, "JAAS login configuration, read per listener and "
       "mechanism: listener.name.<listener>.<mechanism>.sasl.jaas.config; the format of a JAAS "
       "file entry.", mode=PB),
    define("sasl.client.callback.handler.class", C, None, "SASL client callback handler.",
       unused=True),
    define("sasl.server.callback.handler.class", C, None, "SASL server callback handler."),
    define("sasl.login.class", C, None, "Login class (Kerberos, OAUTHBEARER).", unused=True),
    define("sasl.login.callback.handler.class", C, None, "Callback handler of the login "
       "class.", unused=True),
    define("sasl.kerberos.service.name", S, None, "Kerberos principal name the broker runs "
       "as.", mode=PB, unused=True),
    define("sasl.kerberos.kinit.cmd", S, "/usr/bin/kinit", "Path of the Kerberos kinit "
       "command.", mode=PB, unused=True),
    define("sasl.kerberos.ticket.renew.window.factor", D, 0.8, "Share of a Kerberos ticket's "
       "lifetime after which the login thread renews it.", mode=PB, unused=True),
    define("sasl.kerberos.ticket.renew.jitter", D, 0.05, "Random share added to the Kerberos "
       "renewal time.", mode=PB, unused=True),
    define("sasl.kerberos.min.time.before.relogin", L, 60000, "Least time between two "
       "Kerberos relogins, in milliseconds.", mode=PB, unused=True),
    define("sasl.kerberos.principal.to.local.rules", LS, "DEFAULT", "Rules that turn Kerberos "
       "principals into short names.", mode=PB, unused=True),
    define("sasl.login.refresh.window.factor", D, 0.8, "Share of a login credential's "
       "lifetime after which it is refreshed (OAUTHBEARER).", mode=PB, unused=True),
    define("sasl.login.refresh.window.jitter", D, 0.05, "Random share added to the credential "
       "refresh time.", mode=PB, unused=True),
    define("sasl.login.refresh.min.period.seconds", SH, 60, "Least time between credential "
       "refreshes, in seconds.", mode=PB, unused=True),
    define("sasl.login.refresh.buffer.seconds", SH, 300, "Time before a credential expires at "
       "which it is refreshed, in seconds.", mode=PB, unused=True),
    define("sasl.login.connect.timeout.ms", I, None, "Connect timeout towards an OAuth login "
       "provider.", unused=True),
    define("sasl.login.read.timeout.ms", I, None, "Read timeout towards an OAuth login "
       "provider.", unused=True),
    define("sasl.login.retry.backoff.ms", L, 100, "First wait between attempts to log in to "
       "an OAuth provider.", unused=True),
    define("sasl.login.retry.backoff.max.ms", L, 10000, "Longest wait between attempts to log "
       "in to an OAuth provider.", unused=True),
    define("sasl.oauthbearer.scope.claim.name", S, "scope", "JWT claim that holds an "
       "OAUTHBEARER token's scopes."),
    define("sasl.oauthbearer.sub.claim.name", S, "sub", "JWT claim that holds an OAUTHBEARER "
       "token's subject."),
    define("sasl.oauthbearer.token.endpoint.url", S, None, "OAuth endpoint that issues "
       "tokens.", unused=True),
    define("sasl.oauthbearer.jwks.endpoint.url", S, None, "Endpoint with the keys that sign "
       "OAUTHBEARER tokens."),
    define("sasl.oauthbearer.jwks.endpoint.refresh.ms", L, 3600000, "How often the signing "
       "keys are fetched again.", unused=True),
    define("sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", L, 100, "First wait between "
       "attempts to fetch the signing keys.", unused=True),
    define("sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", L, 10000, "Longest wait "
       "between attempts to fetch the signing keys.", unused=True),
    define("sasl.oauthbearer.clock.skew.seconds", I, 30, "Clock difference tolerated when "
       "checking token times."),
    define("sasl.oauthbearer.expected.audience", LS, None, "Audiences a token must name."),
    define("sasl.oauthbearer.expected.issuer", S, None, "Issuer a token must name."),
    define("sasl.server.max.receive.size", I, 524288, "Largest request a client may send on a "
       "SASL listener before it has authenticated."),
    define("connections.max.reauth.ms", L, 0, "Longest session lifetime before a client must "
       "authenticate again (KIP-368); 0 for none."),
    define("security.providers", S, None, "Classes that register security providers.",
       unused=True),
    define("principal.builder.class", C, DEFAULT_PRINCIPAL_BUILDER, "Builds "
       "the principal of an authenticated connection.", mode=PB, unused=True),
    define("authorizer.class.name", S, "", "The authorizer: Kafka's "
       "kafka.security.authorizer.AclAuthorizer or "
       "org.apache.kafka.metadata.authorizer.StandardAuthorizer, or "
       "strom.security.authorizer.AclAuthorizer (all three are Strom's ACL authorizer); empty "
       "for none (every request allowed).", OneOf(("", *AUTHORIZER_CLASS_NAMES))),
    define("delegation.token.master.key", P, None, "Deprecated name of "
       "delegation.token.secret.key.", unused=True),
    define("delegation.token.secret.key", P, None, "Secret that signs delegation tokens; "
       "unset disables them.", unused=True),
    define("delegation.token.max.lifetime.ms", L, 604800000, "Longest a delegation token may "
       "be renewed to.", at_least(1), unused=True),
    define("delegation.token.expiry.time.ms", L, 86400000, "Lifetime a delegation token gets "
       "at each renewal.", at_least(1), unused=True),
    define("delegation.token.expiry.check.interval.ms", L, 3600000, "How often expired "
       "delegation tokens are removed.", at_least(1), unused=True),
    define("password.encoder.secret", P, None, "Secret that encrypts dynamically set "
       "passwords before they are stored.", unused=True),
    define("password.encoder.old.secret", P, None, "Previous encoder secret, for "
       "re-encrypting stored passwords after a change.", unused=True),
    define("password.encoder.keyfactory.algorithm", S, None, "Key derivation algorithm of the "
       "password encoder.", unused=True),
    define("password.encoder.cipher.algorithm", S, "AES/CBC/PKCS5Padding", "Cipher of the "
       "password encoder.", unused=True),
    define("password.encoder.key.length", I, 128, "Key length of the password encoder, in "
       "bits.", at_least(8), unused=True),
    define("password.encoder.iterations", I, 4096, "Key derivation iterations of the password "
       "encoder.", at_least(1024), unused=True),
]
# fmt: on
