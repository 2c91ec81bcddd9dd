// srtp_load: the load side of the secure-relay benchmark. It plays the parties of calls through a media relay and
// blasts SRTP through one of them, counting what comes out on the other side.
//
//   srtp_load dtls CERT KEY PROFILE PACKETS RATE CALLS   ICE + DTLS-SRTP client legs against Switchboard's relay
//   srtp_load sdes SUITE PACKETS RATE                    SDES-keyed legs against rtpengine
//
// PROFILE/SUITE: gcm (AEAD_AES_128_GCM) or cm (AES_CM_128_HMAC_SHA1_80). RATE: packets/s, 0 = flat out.
// The driver talks to it over stdin/stdout, one line at a time:
//   out: PORTS p0 p1 ...            the local UDP ports (dtls: caller and callee of each call; sdes: sender, receiver)
//   in:  LEG i caller|callee SERVER_IP SERVER_PORT SERVER_UFRAG SERVER_PWD MY_UFRAG SERVER_FP_HEX   (dtls)
//   out: OK i caller|callee MS      that leg completed ICE and DTLS (the server's certificate checked) in MS ms
//   in:  SDES SERVER_IP SERVER_PORT KEY_BASE64                                                      (sdes)
//   in:  BLAST [RATE [COUNT]]       send COUNT (PACKETS) from call 0's caller (or the sender) at RATE (packets/s, 0 =
//                                   flat out) and count what arrives at the callee (the receiver)
//   out: RESULT sent=.. received=.. span_s=.. rate=.. loss_pct=.. p50_us=.. p99_us=.. decrypted=..
// Packets: RTP V=2, PT 111, a 1,200-byte payload, the packet's index in the RTP timestamp (sent in clear), so the
// receiver times each packet without decrypting it. While running, every leg sends an ICE consent check every 5 s.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <srtp2/srtp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PAYLOAD 1200
#define HEADER 12
#define SLOT (HEADER + PAYLOAD + SRTP_MAX_TRAILER_LEN)
#define MAX_LEGS 2048

typedef struct {
    int fd;
    int port;
    struct sockaddr_in server;
    char server_ufrag[64], server_pwd[128], my_ufrag[64];
    int ready;
    srtp_t inbound;   // what the server sends this leg
    srtp_t outbound;  // what this leg sends the server
} Leg;

static Leg legs[MAX_LEGS];
static int leg_count;
static atomic_int running = 1;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "srtp_load: %s\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int udp_socket(int *port) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("socket");
    int size = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
    socklen_t len = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static void set_timeout(int fd, int ms) {
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// ---- ICE: a Binding request as a controlling full agent (RFC 8445 §7.1), signed with the server's password ----

static uint32_t crc32_table[256];
static void crc32_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc32_table[i] = c;
    }
}
static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc32_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static size_t put_attr(uint8_t *m, size_t at, uint16_t type, const void *value, uint16_t length) {
    m[at] = type >> 8, m[at + 1] = type & 0xFF, m[at + 2] = length >> 8, m[at + 3] = length & 0xFF;
    memcpy(m + at + 4, value, length);
    size_t padded = (length + 3) & ~3u;
    memset(m + at + 4 + length, 0, padded - length);
    return at + 4 + padded;
}

static size_t binding_request(Leg *leg, int nominate, uint8_t *m) {
    m[0] = 0x00, m[1] = 0x01;
    uint32_t cookie = htonl(0x2112A442);
    memcpy(m + 4, &cookie, 4);
    RAND_bytes(m + 8, 12);
    char username[160];
    int ulen = snprintf(username, sizeof username, "%s:%s", leg->server_ufrag, leg->my_ufrag);
    size_t at = 20;
    at = put_attr(m, at, 0x0006, username, (uint16_t)ulen);
    uint32_t priority = htonl(1845501695u);
    at = put_attr(m, at, 0x0024, &priority, 4);
    uint8_t tiebreaker[8];
    RAND_bytes(tiebreaker, 8);
    at = put_attr(m, at, 0x802A, tiebreaker, 8);
    if (nominate) at = put_attr(m, at, 0x0025, "", 0);
    // MESSAGE-INTEGRITY over the message with the length counting it (RFC 8489 §14.5).
    uint16_t length = (uint16_t)(at - 20 + 24);
    m[2] = length >> 8, m[3] = length & 0xFF;
    uint8_t mac[20];
    unsigned int maclen = 0;
    HMAC(EVP_sha1(), leg->server_pwd, (int)strlen(leg->server_pwd), m, at, mac, &maclen);
    at = put_attr(m, at, 0x0008, mac, 20);
    length = (uint16_t)(at - 20 + 8);
    m[2] = length >> 8, m[3] = length & 0xFF;
    uint32_t fp = htonl(crc32(m, at) ^ 0x5354554E);
    return put_attr(m, at, 0x8028, &fp, 4);
}

static void ice_connect(Leg *leg) {
    uint8_t request[512], response[2048];
    for (int attempt = 0; attempt < 10; attempt++) {
        size_t n = binding_request(leg, 1, request);
        send(leg->fd, request, n, 0);
        uint64_t deadline = now_ns() + 500000000ull;
        while (now_ns() < deadline) {
            ssize_t got = recv(leg->fd, response, sizeof response, 0);
            if (got >= 20 && response[0] == 0x01 && response[1] == 0x01 && memcmp(response + 8, request + 8, 12) == 0)
                return;
            if (got >= 20 && response[0] == 0x01 && response[1] == 0x11) die("the relay refused our ICE check");
        }
    }
    die("no answer to ICE checks");
}

// ---- DTLS-SRTP client over the leg's connected socket (RFC 5764) ----

static SSL_CTX *context;
static const char *profile_name;

static int accept_any(int ok, X509_STORE_CTX *store) {
    (void)ok, (void)store;
    return 1;  // the server's certificate is checked against its SDP fingerprint below
}

static void make_context(const char *cert, const char *key, const char *profile) {
    context = SSL_CTX_new(DTLS_client_method());
    if (!context || SSL_CTX_use_certificate_file(context, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) != 1)
        die("cannot load the client certificate");
    profile_name = strcmp(profile, "gcm") == 0 ? "SRTP_AEAD_AES_128_GCM" : "SRTP_AES128_CM_SHA1_80";
    if (SSL_CTX_set_tlsext_use_srtp(context, profile_name) != 0) die("use_srtp");
    SSL_CTX_set_verify(context, SSL_VERIFY_PEER, accept_any);
}

static void set_policy(srtp_policy_t *policy, int gcm, uint8_t *key, int inbound) {
    memset(policy, 0, sizeof *policy);
    if (gcm) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy->rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy->rtcp);
    } else {
        srtp_crypto_policy_set_rtp_default(&policy->rtp);
        srtp_crypto_policy_set_rtcp_default(&policy->rtcp);
    }
    policy->ssrc.type = inbound ? ssrc_any_inbound : ssrc_any_outbound;
    policy->key = key;
    policy->window_size = 1024;
}

static void dtls_connect(Leg *leg, const char *expected_hex) {
    SSL *ssl = SSL_new(context);
    BIO *bio = BIO_new_dgram(leg->fd, BIO_NOCLOSE);
    BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, &leg->server);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_options(ssl, SSL_OP_NO_QUERY_MTU);
    SSL_set_mtu(ssl, 1200);
    set_timeout(leg->fd, 1000);
    if (SSL_connect(ssl) != 1) die("DTLS handshake failed");
    X509 *peer = SSL_get0_peer_certificate(ssl);
    unsigned char digest[32];
    unsigned int dlen = 0;
    char hex[65];
    X509_digest(peer, EVP_sha256(), digest, &dlen);
    for (unsigned i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02X", digest[i]);
    if (strcasecmp(hex, expected_hex) != 0) die("the relay's certificate does not match its SDP fingerprint");
    int gcm = strcmp(profile_name, "SRTP_AEAD_AES_128_GCM") == 0;
    int klen = 16, slen = gcm ? 12 : 14;
    uint8_t material[60], local[32], remote[32];
    if (SSL_export_keying_material(ssl, material, 2 * (klen + slen), "EXTRACTOR-dtls_srtp", 19, NULL, 0, 0) != 1)
        die("key export");
    // client_key | server_key | client_salt | server_salt; libsrtp wants key||salt.
    memcpy(local, material, klen);
    memcpy(local + klen, material + 2 * klen, slen);
    memcpy(remote, material + klen, klen);
    memcpy(remote + klen, material + 2 * klen + slen, slen);
    srtp_policy_t policy;
    set_policy(&policy, gcm, local, 0);
    if (srtp_create(&leg->outbound, &policy) != srtp_err_status_ok) die("srtp_create");
    set_policy(&policy, gcm, remote, 1);
    if (srtp_create(&leg->inbound, &policy) != srtp_err_status_ok) die("srtp_create");
    // The SSL stays alive (leaked on purpose) so the server keeps a live association; nothing more is read on it.
    set_timeout(leg->fd, 200);
}

static void *consent(void *unused) {
    (void)unused;
    uint8_t request[512];
    while (atomic_load(&running)) {
        for (int i = 0; i < 50 && atomic_load(&running); i++) usleep(100000);
        for (int i = 0; i < leg_count; i++)
            if (legs[i].ready) send(legs[i].fd, request, binding_request(&legs[i], 0, request), 0);
    }
    return NULL;
}

// ---- the blast ----

typedef struct {
    int fd;
    long packets;
    uint64_t *arrival;
    atomic_int sender_done;
    long received, duplicates, decrypted;
    srtp_t verify;
    uint32_t base;
} Receiver;

static void *receive_loop(void *argument) {
    Receiver *r = argument;
    enum { BATCH = 64 };
    static uint8_t buffers[BATCH][2048];
    struct mmsghdr messages[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i] = (struct iovec){buffers[i], sizeof buffers[i]};
        messages[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    uint64_t idle_since = 0;
    for (;;) {
        int got = recvmmsg(r->fd, messages, BATCH, MSG_WAITFORONE, NULL);
        uint64_t t = now_ns();
        if (got <= 0) {
            if (atomic_load(&r->sender_done)) {
                if (!idle_since) idle_since = t;
                if (t - idle_since > 1000000000ull) break;
            }
            continue;
        }
        idle_since = 0;
        for (int i = 0; i < got; i++) {
            uint8_t *p = buffers[i];
            unsigned len = messages[i].msg_len;
            if (len < HEADER || (p[0] & 0xC0) != 0x80 || (p[1] >= 192 && p[1] <= 223)) continue;  // RTP only
            uint32_t index = ((uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7]) - r->base;
            if (index >= (uint32_t)r->packets) continue;
            if (r->arrival[index]) {
                r->duplicates++;
                continue;
            }
            r->arrival[index] = t;
            r->received++;
            if (r->verify && r->decrypted < 200) {
                int n = (int)len;
                if (srtp_unprotect(r->verify, p, &n) == srtp_err_status_ok && n == HEADER + PAYLOAD) r->decrypted++;
            }
        }
    }
    return NULL;
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

// Packet indices continue from one blast to the next: an SRTP session never protects an index twice.
static uint32_t next_index;
static uint8_t payload_type = 111;  // 96 towards rtpengine, whose SDP says so

static void blast(int send_fd, struct sockaddr_in *to, srtp_t outbound, int recv_fd, srtp_t verify, long packets,
                  double rate) {
    uint32_t base = next_index;
    next_index += (uint32_t)packets;
    uint8_t *slots = malloc((size_t)packets * SLOT);
    int *lengths = malloc(sizeof(int) * (size_t)packets);
    uint64_t *sent_at = calloc((size_t)packets, sizeof(uint64_t));
    Receiver receiver = {.fd = recv_fd, .packets = packets, .arrival = calloc((size_t)packets, sizeof(uint64_t)),
                         .verify = verify, .base = base};
    if (!slots || !lengths || !sent_at || !receiver.arrival) die("out of memory");
    for (long i = 0; i < packets; i++) {  // protected ahead of time: the sender only sends
        uint8_t *p = slots + (size_t)i * SLOT;
        uint32_t x = base + (uint32_t)i;
        p[0] = 0x80, p[1] = payload_type, p[2] = (uint8_t)(x >> 8), p[3] = (uint8_t)x;
        p[4] = (uint8_t)(x >> 24), p[5] = (uint8_t)(x >> 16), p[6] = (uint8_t)(x >> 8), p[7] = (uint8_t)x;
        p[8] = 0x12, p[9] = 0x34, p[10] = 0x56, p[11] = 0x78;
        memset(p + HEADER, (int)(i & 0xFF), PAYLOAD);
        lengths[i] = HEADER + PAYLOAD;
        if (srtp_protect(outbound, p, &lengths[i]) != srtp_err_status_ok) die("srtp_protect");
    }
    set_timeout(recv_fd, 100);
    pthread_t thread;
    pthread_create(&thread, NULL, receive_loop, &receiver);
    enum { BATCH = 32 };
    struct mmsghdr messages[BATCH];
    struct iovec iov[BATCH];
    uint64_t start = now_ns();
    long i = 0;
    while (i < packets) {
        int n = 0;
        if (rate > 0) {
            // Paced: every 50 us, send what is due (sleeping leaves the core to the receiver thread).
            long due = (long)((double)(now_ns() - start) * rate / 1e9) + 1;
            if (due > packets) due = packets;
            if (due <= i) {
                struct timespec pause = {0, 50000};
                nanosleep(&pause, NULL);
                continue;
            }
            n = due - i < BATCH ? (int)(due - i) : BATCH;
        } else {
            n = packets - i < BATCH ? (int)(packets - i) : BATCH;
        }
        uint64_t t = now_ns();
        for (int k = 0; k < n; k++) {
            iov[k] = (struct iovec){slots + (size_t)(i + k) * SLOT, (size_t)lengths[i + k]};
            messages[k] = (struct mmsghdr){.msg_hdr = {.msg_name = to, .msg_namelen = sizeof *to, .msg_iov = &iov[k],
                                                       .msg_iovlen = 1}};
            sent_at[i + k] = t;
        }
        int done = sendmmsg(send_fd, messages, (unsigned)n, 0);
        if (done <= 0) {
            if (errno == EAGAIN || errno == ENOBUFS) continue;
            die("sendmmsg");
        }
        i += done;
    }
    uint64_t sent_end = now_ns();
    atomic_store(&receiver.sender_done, 1);
    pthread_join(thread, NULL);
    uint64_t first = UINT64_MAX, last = 0;
    uint64_t *latency = malloc(sizeof(uint64_t) * (size_t)(receiver.received + 1));
    long count = 0;
    for (long k = 0; k < packets; k++) {
        if (!receiver.arrival[k]) continue;
        if (receiver.arrival[k] < first) first = receiver.arrival[k];
        if (receiver.arrival[k] > last) last = receiver.arrival[k];
        latency[count++] = receiver.arrival[k] - sent_at[k];
    }
    qsort(latency, (size_t)count, sizeof(uint64_t), compare_u64);
    double span = count > 1 ? (double)(last - first) / 1e9 : 0;
    printf("RESULT sent=%ld received=%ld duplicates=%ld send_s=%.4f span_s=%.4f rate=%.0f loss_pct=%.3f p50_us=%.1f "
           "p99_us=%.1f decrypted=%ld\n",
           packets, receiver.received, receiver.duplicates, (double)(sent_end - start) / 1e9, span,
           span > 0 ? (double)count / span : 0, 100.0 * (double)(packets - receiver.received) / (double)packets,
           count ? (double)latency[count / 2] / 1e3 : 0, count ? (double)latency[(count * 99) / 100] / 1e3 : 0,
           receiver.decrypted);
    fflush(stdout);
    free(latency);
    free(slots);
    free(lengths);
    free(sent_at);
    free(receiver.arrival);
}

static size_t base64_decode(const char *text, uint8_t *out) {
    return (size_t)EVP_DecodeBlock(out, (const unsigned char *)text, (int)strlen(text));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    crc32_init();
    if (srtp_init() != srtp_err_status_ok) die("srtp_init");
    char line[1024];
    if (argc == 8 && strcmp(argv[1], "dtls") == 0) {
        make_context(argv[2], argv[3], argv[4]);
        long packets = atol(argv[5]);
        double rate = atof(argv[6]);
        int calls = atoi(argv[7]);
        if (calls < 1 || calls * 2 > MAX_LEGS) die("CALLS out of range");
        leg_count = calls * 2;
        printf("PORTS");
        for (int i = 0; i < leg_count; i++) {
            legs[i].fd = udp_socket(&legs[i].port);
            printf(" %d", legs[i].port);
        }
        printf("\n");
        pthread_t keepalive;
        pthread_create(&keepalive, NULL, consent, NULL);
        while (fgets(line, sizeof line, stdin)) {
            int index;
            char role[16], ip[64], ufrag[64], pwd[128], mine[64], fp[80];
            int port;
            if (sscanf(line, "LEG %d %15s %63s %d %63s %127s %63s %79s", &index, role, ip, &port, ufrag, pwd, mine,
                       fp) == 8) {
                Leg *leg = &legs[index * 2 + (strcmp(role, "callee") == 0)];
                leg->server = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
                inet_pton(AF_INET, ip, &leg->server.sin_addr);
                snprintf(leg->server_ufrag, sizeof leg->server_ufrag, "%s", ufrag);
                snprintf(leg->server_pwd, sizeof leg->server_pwd, "%s", pwd);
                snprintf(leg->my_ufrag, sizeof leg->my_ufrag, "%s", mine);
                if (connect(leg->fd, (struct sockaddr *)&leg->server, sizeof leg->server) < 0) die("connect");
                uint64_t t = now_ns();
                set_timeout(leg->fd, 100);
                ice_connect(leg);
                if (!getenv("SRTP_LOAD_ICE_ONLY")) dtls_connect(leg, fp);
                leg->ready = 1;
                printf("OK %d %s %.1f\n", index, role, (double)(now_ns() - t) / 1e6);
            } else if (strncmp(line, "BLAST", 5) == 0) {
                Leg *caller = &legs[0], *callee = &legs[1];
                double r = rate;
                long n = packets;
                sscanf(line, "BLAST %lf %ld", &r, &n);
                blast(caller->fd, &caller->server, caller->outbound, callee->fd, callee->inbound, n, r);
            } else if (strncmp(line, "QUIT", 4) == 0) {
                break;
            }
        }
        atomic_store(&running, 0);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "sdes") == 0) {
        int gcm = strcmp(argv[2], "gcm") == 0;
        payload_type = 96;
        long packets = atol(argv[3]);
        double rate = atof(argv[4]);
        int send_port, recv_port;
        int send_fd = udp_socket(&send_port), recv_fd = udp_socket(&recv_port);
        printf("PORTS %d %d\n", send_port, recv_port);
        srtp_t outbound = NULL;
        struct sockaddr_in to = {.sin_family = AF_INET};
        while (fgets(line, sizeof line, stdin)) {
            char ip[64], key[128];
            int port;
            if (sscanf(line, "SDES %63s %d %127s", ip, &port, key) == 3) {
                uint8_t material[64];
                base64_decode(key, material);
                to.sin_port = htons((uint16_t)port);
                inet_pton(AF_INET, ip, &to.sin_addr);
                srtp_policy_t policy;
                set_policy(&policy, gcm, material, 0);
                if (srtp_create(&outbound, &policy) != srtp_err_status_ok) die("srtp_create");
                printf("OK sdes\n");
            } else if (strncmp(line, "BLAST", 5) == 0 && outbound) {
                double r = rate;
                long n = packets;
                sscanf(line, "BLAST %lf %ld", &r, &n);
                blast(send_fd, &to, outbound, recv_fd, NULL, n, r);
            } else if (strncmp(line, "QUIT", 4) == 0) {
                break;
            }
        }
        return 0;
    }
    fprintf(stderr, "usage: srtp_load dtls CERT KEY gcm|cm PACKETS RATE CALLS | srtp_load sdes gcm|cm PACKETS RATE\n");
    return 2;
}
