// sleep: prints "sleeping", sleeps the given seconds (default 1000) in a WASI host call,
// then prints "woke". For kill tests of a guest blocked outside wasm code.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int secs = argc > 1 ? atoi(argv[1]) : 1000;
    printf("sleeping %d\n", secs);
    fflush(stdout);
    sleep(secs);
    printf("woke\n");
    return 0;
}
