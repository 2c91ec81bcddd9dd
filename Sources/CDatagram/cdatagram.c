#define _GNU_SOURCE
#include "cdatagram.h"

#include <netinet/in.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/uio.h>

/// Room for one IP_PKTINFO or IPV6_PKTINFO control message (the larger of the two).
#define SB_PKTINFO_SPACE CMSG_SPACE(sizeof(struct in6_pktinfo))

/// The local address in a received message's IP_PKTINFO / IPV6_PKTINFO (port 0), or AF_UNSPEC without one.
static void read_local(struct msghdr *header, struct sockaddr_storage *local) {
    memset(local, 0, sizeof(*local));
    local->ss_family = AF_UNSPEC;
    for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(header); cmsg != NULL; cmsg = CMSG_NXTHDR(header, cmsg)) {
        if (cmsg->cmsg_level == IPPROTO_IP && cmsg->cmsg_type == IP_PKTINFO &&
            cmsg->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(cmsg), sizeof(info));
            struct sockaddr_in *sin = (struct sockaddr_in *)local;
            sin->sin_family = AF_INET;
            sin->sin_addr = info.ipi_addr;
            return;
        }
        if (cmsg->cmsg_level == IPPROTO_IPV6 && cmsg->cmsg_type == IPV6_PKTINFO &&
            cmsg->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
            struct in6_pktinfo info;
            memcpy(&info, CMSG_DATA(cmsg), sizeof(info));
            struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)local;
            sin6->sin6_family = AF_INET6;
            sin6->sin6_addr = info.ipi6_addr;
            return;
        }
    }
}

static int recv_batch(int fd, void *slots, size_t slot_size, size_t offset, unsigned count,
                      struct sockaddr_storage *sources, struct sockaddr_storage *locals, unsigned *lengths,
                      int *truncated, int flags) {
    struct mmsghdr messages[SB_BATCH_MAX];
    struct iovec vectors[SB_BATCH_MAX];
    // Aligned for cmsghdr: one control buffer a message, used only when the caller wants local addresses.
    union {
        char bytes[SB_PKTINFO_SPACE];
        struct cmsghdr align;
    } controls[SB_BATCH_MAX];
    if (count > SB_BATCH_MAX) count = SB_BATCH_MAX;
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)slots + i * slot_size + offset;
        vectors[i].iov_len = slot_size - offset;
        messages[i].msg_hdr.msg_name = &sources[i];
        messages[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        if (locals != NULL) {
            messages[i].msg_hdr.msg_control = controls[i].bytes;
            messages[i].msg_hdr.msg_controllen = sizeof(controls[i].bytes);
        }
    }
    int got = recvmmsg(fd, messages, count, flags, NULL);
    for (int i = 0; i < got; i++) {
        lengths[i] = messages[i].msg_len;
        truncated[i] = (messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
        if (locals != NULL) read_local(&messages[i].msg_hdr, &locals[i]);
    }
    return got;
}

int sb_recv_batch(int fd, void *slots, size_t slot_size, unsigned count, struct sockaddr_storage *sources,
                  unsigned *lengths, int *truncated) {
    return recv_batch(fd, slots, slot_size, 0, count, sources, NULL, lengths, truncated, MSG_WAITFORONE);
}

int sb_recv_batch_at(int fd, void *slots, size_t slot_size, size_t offset, unsigned count,
                     struct sockaddr_storage *sources, struct sockaddr_storage *locals, unsigned *lengths,
                     int *truncated) {
    if (offset >= slot_size) return 0;
    return recv_batch(fd, slots, slot_size, offset, count, sources, locals, lengths, truncated, MSG_DONTWAIT);
}

/// Gives `header` one control message of `size` bytes of `data` in `buffer` (SB_PKTINFO_SPACE bytes, aligned).
static void put_control(struct msghdr *header, char *buffer, int level, int type, const void *data, size_t size) {
    memset(buffer, 0, SB_PKTINFO_SPACE);
    header->msg_control = buffer;
    header->msg_controllen = CMSG_SPACE(size);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(header);
    cmsg->cmsg_level = level;
    cmsg->cmsg_type = type;
    cmsg->cmsg_len = CMSG_LEN(size);
    memcpy(CMSG_DATA(cmsg), data, size);
}

int sb_send_batch(int fd, void *const *buffers, const size_t *lengths, const struct sockaddr_storage *destinations,
                  const unsigned *destination_lengths, const struct sockaddr_storage *sources, unsigned count) {
    struct mmsghdr messages[SB_BATCH_MAX];
    struct iovec vectors[SB_BATCH_MAX];
    union {
        char bytes[SB_PKTINFO_SPACE];
        struct cmsghdr align;
    } controls[SB_BATCH_MAX];
    if (count > SB_BATCH_MAX) count = SB_BATCH_MAX;
    memset(messages, 0, sizeof(struct mmsghdr) * count);
    for (unsigned i = 0; i < count; i++) {
        vectors[i].iov_base = buffers[i];
        vectors[i].iov_len = lengths[i];
        messages[i].msg_hdr.msg_name = (void *)&destinations[i];
        messages[i].msg_hdr.msg_namelen = destination_lengths[i];
        messages[i].msg_hdr.msg_iov = &vectors[i];
        messages[i].msg_hdr.msg_iovlen = 1;
        if (sources == NULL) continue;
        // The source address a reply leaves from (IP_PKTINFO's ipi_spec_dst, IPV6_PKTINFO's ipi6_addr).
        if (sources[i].ss_family == AF_INET) {
            struct in_pktinfo info;
            memset(&info, 0, sizeof(info));
            info.ipi_spec_dst = ((const struct sockaddr_in *)&sources[i])->sin_addr;
            put_control(&messages[i].msg_hdr, controls[i].bytes, IPPROTO_IP, IP_PKTINFO, &info, sizeof(info));
        } else if (sources[i].ss_family == AF_INET6) {
            struct in6_pktinfo info;
            memset(&info, 0, sizeof(info));
            info.ipi6_addr = ((const struct sockaddr_in6 *)&sources[i])->sin6_addr;
            put_control(&messages[i].msg_hdr, controls[i].bytes, IPPROTO_IPV6, IPV6_PKTINFO, &info, sizeof(info));
        }
    }
    return sendmmsg(fd, messages, count, MSG_DONTWAIT);
}

int sb_enable_pktinfo(int fd, int family) {
    int one = 1;
    if (family == AF_INET6) return setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    return setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
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
