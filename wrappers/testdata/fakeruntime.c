/* fakeruntime prints its argv (without argv[0]) as a JSON array of hex
 * strings, so that tests can compare arguments byte for byte. It is C so
 * that 10,000 runs stay quick. */
#include <stdio.h>

int main(int argc, char **argv) {
	putchar('[');
	for (int i = 1; i < argc; i++) {
		if (i > 1)
			putchar(',');
		putchar('"');
		for (unsigned char *p = (unsigned char *)argv[i]; *p; p++)
			printf("%02x", *p);
		putchar('"');
	}
	puts("]");
	return 0;
}
