/* codec.c: skeleton hooks so the module builds; the part's owner replaces this file. */
#include "fj.h"

int fj_codec_exec(PyObject *module, fj_state *st) { return 0; }
int fj_codec_traverse(fj_state *st, visitproc visit, void *arg) { return 0; }
void fj_codec_clear(fj_state *st) { }
