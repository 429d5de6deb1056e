/* The beamlet command-line tool. */
#include <stdio.h>
#include <string.h>

#include "beamlet/core.h"

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("beamlet\n");
    return 0;
}
