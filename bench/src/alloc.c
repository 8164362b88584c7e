/*
 * The memory workload of the checkpoint/restore rows (runtime-bench compiles it with
 * `cc -static -O2` into target/bench/alloc and copies it into the bench rootfs).
 *
 * alloc MIB READY [random]: malloc MIB MiB of anonymous memory, fill all of it with a non-zero
 * byte (every page present and private, none the shared zero page), create the file READY, then
 * sleep in pause() until killed, so a checkpoint sees exactly that much touched memory.
 * With `random`, the memory is filled with pseudo-random words instead (xorshift64): pages that
 * no compressor can shrink, as with real data (the migration rows, whose images may be
 * compressed, use it).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The memory escapes through this, so the compiler cannot drop the malloc and memset. */
char *volatile kept;

int main(int argc, char **argv)
{
	int rnd = argc == 4 && strcmp(argv[3], "random") == 0;
	if (argc != 3 && !rnd) {
		fprintf(stderr, "usage: alloc MIB READY [random]\n");
		return 2;
	}
	size_t size = strtoull(argv[1], NULL, 10) << 20;
	char *mem = malloc(size);
	if (mem == NULL) {
		perror("malloc");
		return 1;
	}
	if (rnd) {
		uint64_t x = 0x9e3779b97f4a7c15ull, *w = (uint64_t *)mem;
		for (size_t i = 0; i < size / sizeof(*w); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w[i] = x;
		}
	} else {
		memset(mem, 0x5a, size);
	}
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
