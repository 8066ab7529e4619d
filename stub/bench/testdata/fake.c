/* A trivial OCI runtime for `make bench-runtime`: writes its pid to
 * --pid-file and exits 0, so that the timings show execguard's overhead. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
	for (int i = 1; i < argc; i++) {
		const char *p = NULL;
		if (strcmp(argv[i], "--pid-file") == 0 && i + 1 < argc)
			p = argv[i + 1];
		else if (strncmp(argv[i], "--pid-file=", 11) == 0)
			p = argv[i] + 11;
		if (p) {
			FILE *f = fopen(p, "w");
			if (f) {
				fprintf(f, "%d", (int)getpid());
				fclose(f);
			}
		}
	}
	return 0;
}
