// Batched UDP reads and writes (Linux recvmmsg/sendmmsg), which Swift's Glibc module does not expose (they need
// _GNU_SOURCE). Plain functions over caller-owned arrays: no allocation, at most SB_BATCH_MAX datagrams a call.
#ifndef SWITCHBOARD_CDATAGRAM_H
#define SWITCHBOARD_CDATAGRAM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SB_BATCH_MAX 64

/// Reads up to `count` datagrams into `count` slots of `slot_size` bytes starting at `slots` (blocking until the
/// first one arrives or the socket's receive timeout passes, then taking what is queued). For each datagram read:
/// its length, source address and whether the kernel truncated it (MSG_TRUNC). Returns how many, or -1 (errno).
int sb_recv_batch(int fd, void *slots, size_t slot_size, unsigned count, struct sockaddr_storage *sources,
                  unsigned *lengths, int *truncated);

/// Sends `count` datagrams without blocking; returns how many the kernel took, or -1 (errno) when it took none.
/// With `sources` (may be NULL), datagram `i` leaves from the local address `sources[i]` (IP_PKTINFO /
/// IPV6_PKTINFO; the port is the socket's) unless its family is AF_UNSPEC: a socket bound to a wildcard address
/// then answers from the address a request came to.
int sb_send_batch(int fd, void *const *buffers, const size_t *lengths, const struct sockaddr_storage *destinations,
                  const unsigned *destination_lengths, const struct sockaddr_storage *sources, unsigned count);

/// Like `sb_recv_batch` without blocking (MSG_DONTWAIT), each datagram read `offset` bytes into its slot (room for
/// a header to be written in front of it) and at most `slot_size - offset` bytes long. With `locals` (may be NULL),
/// the local address each datagram was sent to, port 0 (AF_UNSPEC unless `sb_enable_pktinfo` was called).
int sb_recv_batch_at(int fd, void *slots, size_t slot_size, size_t offset, unsigned count,
                     struct sockaddr_storage *sources, struct sockaddr_storage *locals, unsigned *lengths,
                     int *truncated);

/// Has the kernel report each datagram's local address (IP_PKTINFO, or IPV6_RECVPKTINFO for AF_INET6).
int sb_enable_pktinfo(int fd, int family);

/// epoll, level-triggered, readable only: a set of sockets each named by a caller's token.
int sb_poll_create(void);
int sb_poll_add(int poll_fd, int fd, uint64_t token);
int sb_poll_remove(int poll_fd, int fd);
/// Waits up to `timeout_ms` for readable sockets; writes up to `max` tokens; returns how many, or -1 (errno).
int sb_poll_wait(int poll_fd, uint64_t *tokens, int max, int timeout_ms);

#endif
