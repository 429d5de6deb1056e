/* What the C ABI's files share. */
#ifndef BEAMLET_CAPI_INTERNAL_H
#define BEAMLET_CAPI_INTERNAL_H

/* *out = a malloc'ed copy of text (the ABI's way of returning strings). */
int capi_out_string(const char *text, char **out);

#endif
