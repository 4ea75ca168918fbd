// alloc: grows its memory 1 MiB at a time, printing the total, until allocation fails
// (then prints "allocation failed at N MiB" and exits 12) or the optional limit in MiB is
// reached (exit 0). Every page is touched so the memory is really used.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Kept reachable (and volatile) so the compiler cannot elide the allocations.
static char *volatile kept[1 << 16];

int main(int argc, char **argv) {
    int limit = argc > 1 ? atoi(argv[1]) : 1 << 16;
    int mib = 0;
    while (mib < limit && mib < (1 << 16)) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("allocation failed at %d MiB\n", mib);
            return 12;
        }
        memset(p, 1, 1 << 20);
        kept[mib] = p;
        mib++;
        if (mib % 16 == 0) { printf("%d MiB\n", mib); fflush(stdout); }
    }
    printf("allocated %d MiB\n", mib);
    return 0;
}
