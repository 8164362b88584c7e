/*
 * The memory workload of the checkpoint/restore rows (runtime-bench compiles it with
 * `cc -static -O2` into target/bench/alloc and copies it into the bench rootfs).
 *
 * alloc MIB READY: malloc MIB MiB of anonymous memory, fill all of it with a non-zero byte (every
 * page present and private, none the shared zero page), create the file READY, then sleep in
 * pause() until killed, so a checkpoint sees exactly that much touched memory.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The memory escapes through this, so the compiler cannot drop the malloc and memset. */
char *volatile kept;

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: alloc MIB READY\n");
		return 2;
	}
	size_t size = strtoull(argv[1], NULL, 10) << 20;
	char *mem = malloc(size);
	if (mem == NULL) {
		perror("malloc");
		return 1;
	}
	memset(mem, 0x5a, size);
	kept = mem;
	int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	close(fd);
	for (;;)
		pause();
}
