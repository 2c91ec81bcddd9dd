#define _GNU_SOURCE
#include "cdatagram.h"

#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>

static int recv_batch(int fd, void *slots, size_t slot_size, size_t offset, unsigned count,
                      struct sockaddr_storage *sources, unsigned *lengths, int *truncated, int flags) {
    struct mmsghdr messages[SB_BATCH_MAX];
    struct iovec vectors[SB_BATCH_MAX];
    if (count > SB_BATCH_MAX) count = SB_BATCH_MAX;
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)slots + i * slot_size + offset;
        vectors[i].iov_len = slot_size - offset;
        messages[i].msg_hdr.msg_name = &sources[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
    }
    int got = recvmmsg(fd, messages, count, flags, NULL);
    for (int i = 0; i < got; i++) {
        lengths[i] = messages[i].msg_len;
        truncated[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    }
    return got;
}

int sb_recv_batch(int fd, void *slots, size_t slot_size, unsigned count, struct sockaddr_storage *sources,
                  unsigned *lengths, int *truncated) {
    return recv_batch(fd, slots, slot_size, 0, count, sources, lengths, truncated, MSG_WAITFORONE);
}

int sb_recv_batch_at(int fd, void *slots, size_t slot_size, size_t offset, unsigned count,
                     struct sockaddr_storage *sources, unsigned *lengths, int *truncated) {
    if (offset >= slot_size) return 0;
    return recv_batch(fd, slots, slot_size, offset, count, sources, lengths, truncated, MSG_DONTWAIT);
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

int sb_poll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int sb_poll_add(int poll_fd, int fd, uint64_t token) {
    struct epoll_event event = {.events = EPOLLIN, .data.u64 = token};
    return epoll_ctl(poll_fd, EPOLL_CTL_ADD, fd, &event);
}

int sb_poll_remove(int poll_fd, int fd) { return epoll_ctl(poll_fd, EPOLL_CTL_DEL, fd, NULL); }

int sb_poll_wait(int poll_fd, uint64_t *tokens, int max, int timeout_ms) {
    struct epoll_event events[SB_BATCH_MAX];
    if (max > SB_BATCH_MAX) max = SB_BATCH_MAX;
    int got = epoll_wait(poll_fd, events, max, timeout_ms);
    for (int i = 0; i < got; i++) tokens[i] = events[i].data.u64;
    return got;
}
