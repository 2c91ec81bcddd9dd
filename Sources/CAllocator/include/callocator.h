#ifndef SWITCHBOARD_CALLOCATOR_H
#define SWITCHBOARD_CALLOCATOR_H

#include <stddef.h>

/// Gives free heap memory back to the kernel (glibc's malloc_trim(0), every arena); returns 1 when some was.
/// Elsewhere a no-op returning 0.
int sb_allocator_trim(void);

/// Bytes the allocator holds free (glibc's mallinfo2 fordblks), or 0 where it cannot say.
size_t sb_allocator_free_bytes(void);

#endif
