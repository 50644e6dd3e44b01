/* Names on stdin, one a line, printed as server/demangle.c demangles
 * them (unchanged when they are not Rust names): attach_ustack compares
 * this with binutils' c++filt over every Rust symbol of its victims. */
#include <stdio.h>
#include <string.h>

#include "demangle.h"

int main(void)
{
    char line[8192], out[4096];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\n")] = 0;
        if (puts(rust_demangle(line, out, sizeof(out)) ? out : line) < 0)
            return 1;
    }
    return ferror(stdin) ? 1 : 0;
}
