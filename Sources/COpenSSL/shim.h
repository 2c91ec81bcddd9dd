#ifndef SWITCHBOARD_COPENSSL_SHIM_H
#define SWITCHBOARD_COPENSSL_SHIM_H

// The system OpenSSL (libssl-dev), for the DTLSSRTP module only. Macros and variadic calls Swift cannot import are
// wrapped here as static inline functions.
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/srtp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static inline EVP_PKEY *sb_generate_p256_key(void) { return EVP_EC_gen("P-256"); }

static inline EVP_PKEY *sb_generate_rsa2048_key(void) { return EVP_RSA_gen(2048); }

/// A self-signed X.509 v3 certificate for `key`, valid from an hour ago for `days` days, signed with SHA-256.
static inline X509 *sb_make_self_signed(EVP_PKEY *key, const char *common_name, long days) {
    X509 *x509 = X509_new();
    if (x509 == NULL) return NULL;
    unsigned char serial[8];
    if (RAND_bytes(serial, sizeof serial) != 1) goto fail;
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (bn == NULL) goto fail;
    int ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x509)) != NULL;
    BN_free(bn);
    if (!ok) goto fail;
    if (X509_set_version(x509, 2) != 1) goto fail;
    if (X509_gmtime_adj(X509_getm_notBefore(x509), -3600) == NULL) goto fail;
    if (X509_gmtime_adj(X509_getm_notAfter(x509), days * 86400L) == NULL) goto fail;
    if (X509_set_pubkey(x509, key) != 1) goto fail;
    X509_NAME *name = X509_get_subject_name(x509);
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0) != 1)
        goto fail;
    if (X509_set_issuer_name(x509, name) != 1) goto fail;
    if (X509_sign(x509, key, EVP_sha256()) == 0) goto fail;
    return x509;
fail:
    X509_free(x509);
    return NULL;
}

static inline long sb_ssl_ctx_set_min_dtls12(SSL_CTX *ctx) {
    return SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
}

static inline long sb_ssl_set_mtu(SSL *ssl, long mtu) {
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    return SSL_set_mtu(ssl, mtu);
}

static inline size_t sb_bio_pending(BIO *bio) { return BIO_ctrl_pending(bio); }

/// DTLS retransmission timer: the first interval is kept in the SSL's app data (microseconds), then it doubles up
/// to 60 s (RFC 6347 §4.2.4.1).
static inline unsigned int sb_dtls_timer(SSL *ssl, unsigned int current_us) {
    if (current_us == 0) return (unsigned int)(uintptr_t)SSL_get_app_data(ssl);
    unsigned long next = (unsigned long)current_us * 2;
    return next > 60000000UL ? 60000000U : (unsigned int)next;
}

static inline void sb_dtls_use_timer(SSL *ssl, unsigned int initial_us) {
    SSL_set_app_data(ssl, (void *)(uintptr_t)initial_us);
    DTLS_set_timer_cb(ssl, sb_dtls_timer);
}

/// Microseconds until the retransmission timer fires (0 when due), or -1 when no timer runs.
static inline long long sb_dtls_timeout_us(SSL *ssl) {
    struct timeval tv;
    if (DTLSv1_get_timeout(ssl, &tv) != 1) return -1;
    return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

/// Retransmits the last flight if its timer expired: > 0 sent, 0 nothing due, < 0 too many retransmissions.
static inline int sb_dtls_handle_timeout(SSL *ssl) { return (int)DTLSv1_handle_timeout(ssl); }

/// A memory BIO that reports "retry" rather than EOF when empty, as an SSL read BIO must.
static inline BIO *sb_bio_new_mem_retry(void) {
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio != NULL) BIO_set_mem_eof_return(bio, -1);
    return bio;
}

static inline unsigned long sb_srtp_profile_id(SSL *ssl) {
    SRTP_PROTECTION_PROFILE *profile = SSL_get_selected_srtp_profile(ssl);
    return profile == NULL ? 0 : profile->id;
}

static inline int sb_accept_any_certificate(int preverify_ok, X509_STORE_CTX *ctx) {
    (void)preverify_ok;
    (void)ctx;
    return 1;
}

/// Peers present self-signed certificates; they are checked against the SDP fingerprint after the handshake.
static inline void sb_ssl_ctx_require_peer_certificate(SSL_CTX *ctx) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, sb_accept_any_certificate);
}

/// A new ex_data slot on SSL objects (the listener keeps its cookie state there).
static inline int sb_ssl_ex_new_index(void) { return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/// Empties a memory BIO.
static inline int sb_bio_reset(BIO *bio) { return (int)BIO_reset(bio); }

#endif
