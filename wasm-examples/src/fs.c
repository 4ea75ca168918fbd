// fs: file access through the container's root preopen.
//   fs read PATH          print the file, exit 0; exit 2 if it cannot be opened
//   fs write PATH TEXT    write TEXT to PATH, exit 0; exit 3 if that fails
//   fs ls DIR             list a directory
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "read") == 0) {
        FILE *f = fopen(argv[2], "r");
        if (!f) { printf("cannot open %s: %s\n", argv[2], strerror(errno)); return 2; }
        char buf[512]; size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) fwrite(buf, 1, n, stdout);
        fclose(f);
        return 0;
    }
    if (argc >= 4 && strcmp(argv[1], "write") == 0) {
        FILE *f = fopen(argv[2], "w");
        if (!f || fputs(argv[3], f) < 0 || fclose(f) != 0) {
            printf("cannot write %s: %s\n", argv[2], strerror(errno));
            return 3;
        }
        printf("wrote %s\n", argv[2]);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "ls") == 0) {
        DIR *d = opendir(argv[2]);
        if (!d) { printf("cannot list %s: %s\n", argv[2], strerror(errno)); return 2; }
        struct dirent *e;
        while ((e = readdir(d))) printf("%s\n", e->d_name);
        closedir(d);
        return 0;
    }
    fprintf(stderr, "usage: fs read PATH | fs write PATH TEXT | fs ls DIR\n");
    return 64;
}
