// The reference loop of Benchmarks/srtp: protect + unprotect of 1,200-byte-payload RTP packets straight through
// libsrtp, the same work Sources/srtp-bench does through Switchboard's SRTPSession. Prints one JSON line per profile.
#include <srtp2/srtp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void run(const char *name, int gcm, long packets) {
    unsigned char material[30];
    for (int i = 0; i < 30; i++) material[i] = (unsigned char)(i * 7 + 1);
    srtp_policy_t out, in;
    memset(&out, 0, sizeof out);
    memset(&in, 0, sizeof in);
    srtp_policy_t *policies[2] = {&out, &in};
    for (int p = 0; p < 2; p++) {
        if (gcm) {
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policies[p]->rtp);
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policies[p]->rtcp);
        } else {
            srtp_crypto_policy_set_rtp_default(&policies[p]->rtp);
            srtp_crypto_policy_set_rtcp_default(&policies[p]->rtcp);
        }
        policies[p]->key = material;
        policies[p]->window_size = 1024;
    }
    out.ssrc.type = ssrc_any_outbound;
    in.ssrc.type = ssrc_any_inbound;
    srtp_t sender, receiver;
    if (srtp_create(&sender, &out) || srtp_create(&receiver, &in)) {
        fprintf(stderr, "srtp_create failed\n");
        exit(1);
    }
    unsigned char template[12 + 1200], buffer[12 + 1200 + SRTP_MAX_TRAILER_LEN];
    memset(template, 0xAB, sizeof template);
    template[0] = 0x80;
    template[1] = 111;
    template[8] = 0x12; template[9] = 0x34; template[10] = 0x56; template[11] = 0x78;
    double start = now();
    for (long i = 0; i < packets; i++) {
        memcpy(buffer, template, sizeof template);
        buffer[2] = (unsigned char)(i >> 8);
        buffer[3] = (unsigned char)i;
        buffer[4] = (unsigned char)(i >> 24); buffer[5] = (unsigned char)(i >> 16);
        int length = sizeof template;
        if (srtp_protect(sender, buffer, &length) != srtp_err_status_ok) { fprintf(stderr, "protect failed\n"); exit(1); }
        if (srtp_unprotect(receiver, buffer, &length) != srtp_err_status_ok) { fprintf(stderr, "unprotect failed at %ld\n", i); exit(1); }
    }
    double seconds = now() - start;
    printf("{\"impl\":\"c\",\"profile\":\"%s\",\"packets\":%ld,\"seconds\":%.4f,\"packetsPerSecond\":%.0f,\"gbitPerSecond\":%.3f}\n",
           name, packets, seconds, packets / seconds, packets * 1200.0 * 8 / seconds / 1e9);
    srtp_dealloc(sender);
    srtp_dealloc(receiver);
}

int main(int argc, char **argv) {
    long packets = argc > 1 ? atol(argv[1]) : 1000000;
    if (srtp_init() != srtp_err_status_ok) return 1;
    run("SRTP_AEAD_AES_128_GCM", 1, packets);
    run("SRTP_AES128_CM_SHA1_80", 0, packets);
    return 0;
}
