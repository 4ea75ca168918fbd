// hello: prints its arguments and the environment variables whose names start with POUCH_,
// echoes stdin when the first argument is "--stdin", and exits with the status given as
// "--exit N". The test program for argv, env, stdio and exit codes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv) {
    int code = 0;
    int echo_stdin = 0;
    printf("hello from wasm\n");
    for (int i = 0; i < argc; i++) {
        printf("arg[%d]=%s\n", i, argv[i]);
        if (strcmp(argv[i], "--exit") == 0 && i + 1 < argc) code = atoi(argv[i + 1]);
        if (strcmp(argv[i], "--stdin") == 0) echo_stdin = 1;
    }
    for (char **e = environ; *e; e++) {
        if (strncmp(*e, "POUCH_", 6) == 0) printf("env %s\n", *e);
    }
    if (echo_stdin) {
        char buf[256];
        while (fgets(buf, sizeof buf, stdin)) printf("stdin: %s", buf);
    }
    fprintf(stderr, "to stderr\n");
    fflush(stdout);
    return code;
}
