#ifndef SWITCHBOARD_CSRTP_SHIM_H
#define SWITCHBOARD_CSRTP_SHIM_H

#include <srtp2/srtp.h>

/// SRTP_MAX_TRAILER_LEN as a function: the bytes `srtp_protect` may append after a packet.
static inline int switchboard_srtp_max_trailer_len(void) { return SRTP_MAX_TRAILER_LEN; }

#endif
