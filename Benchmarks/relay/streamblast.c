/* streamblast: TURN over TCP or TLS load client (the stream counterpart of ../shared/tools/turn-load/turnblast).
 * For each of M clients: connect to 127.0.0.1:SERVER_PORT (TLS 1.2 via OpenSSL, certificate not verified),
 * Allocate (UDP relay; long-term credentials: 401 -> realm/nonce -> Allocate with MESSAGE-INTEGRITY = HMAC-SHA1
 * keyed with MD5(user:realm:pass), then FINGERPRINT), ChannelBind 0x4000 -> 127.0.0.1:SINK_PORT, then send
 * ChannelData (payload LEN, padded to a multiple of 4 as RFC 8656 requires on streams) back to back on the byte
 * stream, many frames per write()/SSL_write(), non-blocking, at RATE frames/s in total (0 = flat out) for SECS.
 * Whatever the server sends is read and discarded. At the end each allocation is deleted (Refresh lifetime 0).
 * usage: streamblast tcp|tls SERVER_PORT SINK_PORT LEN RATE SECS [M=1] [USER=alice] [PASS=secret] [REALM=example.org]
 * prints: READY once every client is bound, then BLAST clients= len= sent= err= wall_s= rate= cpu_s=
 * sent counts whole frames handed to the kernel (TCP) or to OpenSSL (TLS). Build: build-streamblast.sh. */
#include "common.h"   /* from ../shared/tools/turn-load: now_s, lo_addr, install_sig/stop_flag, cpu_s_self */
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/evp.h>

#define MAGIC 0x2112A442u
#define MAXC 256
#define BUFTARGET (256 * 1024)     /* bytes of back-to-back frames per write */

typedef struct { unsigned char b[1500]; int len; } msg_t;
typedef struct {
    int fd, dead; SSL *ssl;
    char nonce[256]; int nl;
    uint64_t pos;    /* bytes of the frame stream written so far */
    uint64_t pend;   /* bytes queued but not yet written (flat out: practically unbounded) */
    int retry;       /* TLS: length of an SSL_write that must be repeated with the same arguments (0: none) */
} cl_t;

static void put16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static void put32(unsigned char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static uint16_t get16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static void m_init(msg_t *m, uint16_t type) {
    memset(m, 0, sizeof *m); put16(m->b, type); put32(m->b + 4, MAGIC);
    for (int i = 0; i < 12; i++) m->b[8 + i] = rand();
    m->len = 20;
}
static void m_attr(msg_t *m, uint16_t t, const void *v, int l) {
    put16(m->b + m->len, t); put16(m->b + m->len + 2, l); memcpy(m->b + m->len + 4, v, l);
    int pl = (l + 3) & ~3; memset(m->b + m->len + 4 + l, 0, pl - l);
    m->len += 4 + pl; put16(m->b + 2, m->len - 20);
}
static void m_xaddr(msg_t *m, uint16_t t, uint32_t ip, uint16_t port) {
    unsigned char v[8] = {0, 1}; put16(v + 2, port ^ (MAGIC >> 16)); put32(v + 4, ip ^ MAGIC); m_attr(m, t, v, 8);
}
static void m_integrity(msg_t *m, const unsigned char key[16]) {
    put16(m->b + 2, m->len - 20 + 24);               /* the length covers MESSAGE-INTEGRITY itself */
    unsigned char mac[20]; unsigned int ml = 20;
    HMAC(EVP_sha1(), key, 16, m->b, m->len, mac, &ml);
    m_attr(m, 0x0008, mac, 20);
}
static void m_fingerprint(msg_t *m) {
    put16(m->b + 2, m->len - 20 + 8);                /* ... and FINGERPRINT's covers itself */
    uint32_t c = 0xFFFFFFFFu;
    for (int i = 0; i < m->len; i++) {
        c ^= m->b[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    unsigned char v[4]; put32(v, ~c ^ 0x5354554Eu); m_attr(m, 0x8028, v, 4);
}
static const unsigned char *find_attr(const unsigned char *r, int rl, uint16_t t, int *l) {
    int off = 20;
    while (off + 4 <= rl) {
        uint16_t at = get16(r + off), al = get16(r + off + 2);
        if (at == t && off + 4 + al <= rl) { if (l) *l = al; return r + off + 4; }
        off += 4 + ((al + 3) & ~3);
    }
    return NULL;
}
static int resp_ok(const unsigned char *r) { return (get16(r) & 0x0110) == 0x0100; }
static int err_code(const unsigned char *r, int n) {
    int l; const unsigned char *e = find_attr(r, n, 0x0009, &l);
    return e && l >= 4 ? (e[2] & 7) * 100 + e[3] : 0;
}

/* non-blocking I/O on either transport: > 0 bytes, 0 would block, -1 error or closed */
static int io_write(cl_t *c, const void *b, int n) {
    if (!c->ssl) {
        ssize_t k = send(c->fd, b, n, MSG_NOSIGNAL);
        return k >= 0 ? (int)k : (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    }
    int k = SSL_write(c->ssl, b, n); if (k > 0) return k;
    int e = SSL_get_error(c->ssl, k);
    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
}
static int io_read(cl_t *c, void *b, int n) {
    if (!c->ssl) {
        ssize_t k = recv(c->fd, b, n, 0);
        return k > 0 ? (int)k : k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) ? 0 : -1;
    }
    int k = SSL_read(c->ssl, b, n); if (k > 0) return k;
    int e = SSL_get_error(c->ssl, k);
    return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}
static int wait_fd(int fd, short ev, double until) {
    struct pollfd p = {fd, ev, 0}; double d = until - now_s();
    return d > 0 && poll(&p, 1, (int)(d * 1000) + 1) >= 0;
}
static int write_all(cl_t *c, const unsigned char *b, int n, double until) {
    while (n > 0) {
        int k = io_write(c, b, n);
        if (k < 0) return -1;
        if (k > 0) { b += k; n -= k; continue; }
        if (!wait_fd(c->fd, POLLOUT | POLLIN, until)) return -1;
    }
    return 0;
}
/* Sends m and returns the length of the STUN message on the stream carrying its transaction ID (frames before it,
 * STUN or ChannelData, are skipped), -1 on error or after 5 s. */
static int transact(cl_t *c, msg_t *m, unsigned char *resp, int cap) {
    static unsigned char rb[65536]; int rl = 0; double until = now_s() + 5;
    if (write_all(c, m->b, m->len, until)) return -1;
    for (;;) {
        while (rl >= 4) {
            int kind = rb[0] & 0xC0;                   /* 00: STUN message, 01: ChannelData (padded on streams) */
            int fl = kind == 0 ? 20 + get16(rb + 2) : kind == 0x40 ? 4 + ((get16(rb + 2) + 3) & ~3) : -1;
            if (fl < 0) return -1;                     /* not a TURN stream */
            if (rl < fl) break;
            if (kind == 0 && memcmp(rb + 8, m->b + 8, 12) == 0) {
                if (fl > cap) return -1;
                memcpy(resp, rb, fl); return fl;
            }
            memmove(rb, rb + fl, rl - fl); rl -= fl;
        }
        if (rl == (int)sizeof rb) return -1;
        int k = io_read(c, rb + rl, (int)sizeof rb - rl);
        if (k < 0) return -1;
        if (k > 0) rl += k;
        else if (!wait_fd(c->fd, POLLIN, until)) return -1;
    }
}

int main(int argc, char **argv) {
    if (argc < 7 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "tls"))) {
        fprintf(stderr, "usage: streamblast tcp|tls SERVER_PORT SINK_PORT LEN RATE SECS [M] [user] [pass] [realm]\n");
        return 2;
    }
    int tls = !strcmp(argv[1], "tls"), sport = atoi(argv[2]), kport = atoi(argv[3]), len = atoi(argv[4]);
    double rate = atof(argv[5]), secs = atof(argv[6]);
    int M = argc > 7 ? atoi(argv[7]) : 1; if (M < 1) M = 1; if (M > MAXC) M = MAXC;
    const char *user = argc > 8 ? argv[8] : "alice", *pass = argc > 9 ? argv[9] : "secret";
    const char *realm = argc > 10 ? argv[10] : "example.org";
    if (secs > 120) secs = 120;
    if (len < 4 || len > 1400) len = 172;
    srand(getpid() ^ time(NULL)); prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    install_sig(); signal(SIGPIPE, SIG_IGN);
    unsigned char key[16];
    { char k[512]; int kl = snprintf(k, sizeof k, "%s:%s:%s", user, realm, pass);
      unsigned int ol; EVP_Digest(k, kl, key, &ol, EVP_md5(), NULL); }
    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        /* TLS 1.2 exactly, whichever server: coturn 4.6.1 refuses 1.3, and a comparison is only fair on one version
         * (STREAMBLAST_TLS13=1 lets 1.3 be negotiated where the server offers it). */
        int max = getenv("STREAMBLAST_TLS13") ? 0 : TLS1_2_VERSION;
        if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) || !SSL_CTX_set_max_proto_version(ctx, max)) {
            ERR_print_errors_fp(stderr); return 1;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* a throwaway self-signed certificate */
    }
    static cl_t cl[MAXC]; char srealm[256]; int srl = 0; uint32_t lo = 0x7f000001;
    unsigned char resp[1500]; unsigned char tr[4] = {17, 0, 0, 0};   /* REQUESTED-TRANSPORT: UDP */
    for (int i = 0; i < M; i++) {
        cl_t *c = &cl[i]; int one = 1;
        struct sockaddr_in srv = lo_addr(sport);
        if ((c->fd = socket(AF_INET, SOCK_STREAM, 0)) < 0) { perror("socket"); return 1; }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(c->fd, (struct sockaddr *)&srv, sizeof srv)) { perror("connect"); return 1; }
        if (tls) {
            c->ssl = SSL_new(ctx); SSL_set_fd(c->ssl, c->fd);
            if (SSL_connect(c->ssl) != 1) {
                fprintf(stderr, "client %d: TLS handshake failed\n", i); ERR_print_errors_fp(stderr); return 1;
            }
            SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            if (i == 0) fprintf(stderr, "streamblast: %s %s\n", SSL_get_version(c->ssl), SSL_get_cipher(c->ssl));
        }
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        msg_t m; m_init(&m, 0x0003); m_attr(&m, 0x0019, tr, 4); m_fingerprint(&m);
        int n = transact(c, &m, resp, sizeof resp), l;
        if (n < 0 || err_code(resp, n) != 401) {
            fprintf(stderr, "client %d: no 401 (n=%d code=%d)\n", i, n, n > 0 ? err_code(resp, n) : 0); return 1;
        }
        const unsigned char *v = find_attr(resp, n, 0x0015, &l);
        if (!v || l > (int)sizeof c->nonce) { fprintf(stderr, "client %d: 401 without NONCE\n", i); return 1; }
        memcpy(c->nonce, v, l); c->nl = l;
        if ((v = find_attr(resp, n, 0x0014, &l)) && l <= (int)sizeof srealm) { memcpy(srealm, v, l); srl = l; }
        m_init(&m, 0x0003); m_attr(&m, 0x0019, tr, 4); m_attr(&m, 0x0006, user, strlen(user));
        m_attr(&m, 0x0014, srealm, srl); m_attr(&m, 0x0015, c->nonce, c->nl); m_integrity(&m, key); m_fingerprint(&m);
        n = transact(c, &m, resp, sizeof resp);
        if (n < 0 || !resp_ok(resp)) {
            fprintf(stderr, "client %d: Allocate failed code=%d\n", i, n > 0 ? err_code(resp, n) : -1); return 1;
        }
        unsigned char ch[4] = {0x40, 0x00, 0, 0};
        m_init(&m, 0x0009); m_attr(&m, 0x000C, ch, 4); m_xaddr(&m, 0x0012, lo, kport);
        m_attr(&m, 0x0006, user, strlen(user)); m_attr(&m, 0x0014, srealm, srl); m_attr(&m, 0x0015, c->nonce, c->nl);
        m_integrity(&m, key); m_fingerprint(&m);
        n = transact(c, &m, resp, sizeof resp);
        if (n < 0 || !resp_ok(resp)) {
            fprintf(stderr, "client %d: ChannelBind failed code=%d\n", i, n > 0 ? err_code(resp, n) : -1); return 1;
        }
    }
    /* a buffer of identical back-to-back frames; every client writes from it at its own offset */
    const int fsz = 4 + ((len + 3) & ~3), nf = BUFTARGET / fsz, bufb = nf * fsz;
    unsigned char *buf = calloc(1, bufb), scratch[65536];
    if (!buf) return 1;
    for (int f = 0; f < nf; f++) {
        unsigned char *p = buf + f * fsz; put16(p, 0x4000); put16(p + 2, len); memset(p + 4, 0xcd, len);
    }
    struct pollfd pf[MAXC];
    unsigned long err = 0, sent = 0; uint64_t queued = 0; int rr = 0;
    for (int i = 0; i < M; i++) cl[i].pend = rate > 0 ? 0 : UINT64_MAX / 2;
    printf("READY\n"); fflush(stdout);
    double t0 = now_s(), tend = t0 + secs, t;
    while (!stop_flag && (t = now_s()) < tend) {
        int busy = 0;
        if (rate > 0) {   /* queue the frames due by now, spread over the clients */
            uint64_t due = (uint64_t)((t - t0) * rate);
            if (due > queued) {
                uint64_t d = due - queued, q = d / M, r = d % M; queued = due;
                for (int i = 0; i < M; i++) cl[i].pend += q * fsz;
                for (uint64_t j = 0; j < r; j++) { cl[rr].pend += fsz; rr = (rr + 1) % M; }
            }
        }
        for (int i = 0; i < M; i++) {
            pf[i].fd = cl[i].dead ? -1 : cl[i].fd; pf[i].revents = 0;
            pf[i].events = POLLIN | (cl[i].pend || cl[i].retry ? POLLOUT : 0);
            busy |= !cl[i].dead && (cl[i].pend || cl[i].retry);
        }
        /* with frames to write, wait for room; paced and idle, sleep until the next frame is due (at least 1 ms,
         * so that high rates go out in batches) */
        double w = busy ? tend - t : t0 + (queued + 1) / rate - t;
        if (!busy && w < 0.001) w = 0.001;
        if (w > 0.1) w = 0.1;
        struct timespec ts = {0, (long)(w * 1e9)};
        if (ppoll(pf, M, &ts, NULL) < 0 && errno != EINTR) { perror("ppoll"); break; }
        for (int i = 0; i < M; i++) {
            cl_t *c = &cl[i];
            if (c->dead) continue;
            if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))   /* read and discard; a closed stream ends the client */
                for (int k, spins = 0; spins < 16 && (k = io_read(c, scratch, sizeof scratch)) != 0; spins++)
                    if (k < 0) { c->dead = 1; err++; break; }
            if (c->dead || !(pf[i].revents & POLLOUT) || !(c->pend || c->retry)) continue;
            int off = (int)(c->pos % bufb);
            int n = c->retry ? c->retry : (int)(c->pend < (uint64_t)(bufb - off) ? c->pend : (uint64_t)(bufb - off));
            int k = io_write(c, buf + off, n);
            if (k > 0) { c->pos += k; c->pend -= k; c->retry = 0; }
            else if (k == 0) { if (c->ssl) c->retry = n; }
            else { c->dead = 1; err++; }
        }
    }
    double wall = now_s() - t0, until = now_s() + 2;
    /* finish the frame (and any TLS record) under way, count whole frames, delete the allocation (Refresh lifetime
     * 0) and half-close; then read until the server closes, so that no unread byte turns close() into a reset that
     * would drop frames still queued in the socket */
    for (int i = 0; i < M; i++) {
        cl_t *c = &cl[i];
        while (!c->dead && (c->retry || c->pos % fsz)) {
            int off = (int)(c->pos % bufb), n = c->retry ? c->retry : fsz - (int)(c->pos % fsz);
            int k = io_write(c, buf + off, n);
            if (k > 0) { c->pos += k; c->retry = 0; }
            else if (k < 0 || !wait_fd(c->fd, POLLOUT | POLLIN, until)) { c->dead = 1; err++; }
        }
        sent += c->pos / fsz;
        if (c->dead) continue;
        msg_t m; unsigned char lt[4] = {0};
        m_init(&m, 0x0004); m_attr(&m, 0x000D, lt, 4); m_attr(&m, 0x0006, user, strlen(user));
        m_attr(&m, 0x0014, srealm, srl); m_attr(&m, 0x0015, c->nonce, c->nl); m_integrity(&m, key); m_fingerprint(&m);
        write_all(c, m.b, m.len, until);
        if (c->ssl) SSL_shutdown(c->ssl);
        shutdown(c->fd, SHUT_WR);
    }
    for (int open = M; open > 0 && now_s() < until + 3;) {
        open = 0;
        for (int i = 0; i < M; i++) {
            pf[i].fd = cl[i].dead ? -1 : cl[i].fd; pf[i].events = POLLIN; open += !cl[i].dead;
        }
        if (open && poll(pf, M, 100) > 0)
            for (int i = 0; i < M; i++)
                for (int k; pf[i].revents && (k = io_read(&cl[i], scratch, sizeof scratch)) != 0;)
                    if (k < 0) { cl[i].dead = 1; break; }
    }
    for (int i = 0; i < M; i++) { if (cl[i].ssl) SSL_free(cl[i].ssl); close(cl[i].fd); }
    if (ctx) SSL_CTX_free(ctx);
    free(buf);
    printf("BLAST clients=%d len=%d sent=%lu err=%lu wall_s=%.3f rate=%.0f cpu_s=%.3f\n", M, len, sent, err, wall,
           sent / wall, cpu_s_self());
    return 0;
}
