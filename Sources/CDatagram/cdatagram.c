#define _GNU_SOURCE
#include "cdatagram.h"

#include <string.h>
#include <sys/uio.h>

int sb_recv_batch(int fd, void *slots, size_t slot_size, unsigned count, struct sockaddr_storage *sources,
                  unsigned *lengths, int *truncated) {
    struct mmsghdr messages[SB_BATCH_MAX];
    struct iovec vectors[SB_BATCH_MAX];
    if (count > SB_BATCH_MAX) count = SB_BATCH_MAX;
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)slots + i * slot_size;
        vectors[i].iov_len = slot_size;
        messages[i].msg_hdr.msg_name = &sources[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(fd, messages, count, MSG_WAITFORONE, NULL);
    for (int i = 0; i < got; i++) {
        lengths[i] = messages[i].msg_len;
        truncated[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    }
    return got;
}

int sb_send_batch(int fd, void *const *buffers, const size_t *lengths, const struct sockaddr_storage *destinations,
                  const unsigned *destination_lengths, unsigned count) {
    struct mmsghdr messages[SB_BATCH_MAX];
    struct iovec vectors[SB_BATCH_MAX];
    if (count > SB_BATCH_MAX) count = SB_BATCH_MAX;
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = lengths[i];
        messages[i].msg_hdr.msg_name = (void *)&destinations[i];
        messages[i].msg_hdr.msg_namelen = destination_lengths[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    return sendmmsg(fd, messages, count, MSG_DONTWAIT);
}
