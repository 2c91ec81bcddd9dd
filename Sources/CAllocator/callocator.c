// Swift's Glibc module does not export <malloc.h>; these two wrappers are all Switchboard needs from it.
#include "callocator.h"

#include <stdlib.h>  // defines __GLIBC__ where glibc is the C library

#if defined(__GLIBC__)
#include <malloc.h>

int sb_allocator_trim(void) { return malloc_trim(0); }

size_t sb_allocator_free_bytes(void) {
#if __GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33)
    struct mallinfo2 info = mallinfo2();
    return info.fordblks;
#else
    return 0;
#endif
}
#else
int sb_allocator_trim(void) { return 0; }
size_t sb_allocator_free_bytes(void) { return 0; }
#endif
