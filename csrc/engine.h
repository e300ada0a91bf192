/* engine.h: faster codec engines found in optional packages (the engine shim).
 *
 * The zlib-ng package's extension (zlib_ng.zlib_ng) carries zlib-ng's native API (zng_*), the
 * zstandard package's cffi extension (zstandard._cffi) carries libzstd: both statically linked
 * with their symbols exported. The C core binds to them with dlopen + dlsym on the extension's
 * file (no headers or libraries needed at build time); the stdlib
 * library (zlib) or the package's Python API stays the fallback when a package or symbol is
 * missing.
 */
#ifndef FJ_ENGINE_H
#define FJ_ENGINE_H

#include <stddef.h>
#include <stdint.h>

/* Bind `n` symbols of the extension module `module` (found with importlib, loaded with dlopen,
 * not imported) into fns[]. GIL held.
 * 1: bound (*handle set; dlclose it when done), 0: not available (no exception set), -1: the
 * import failed with something else than ImportError (exception set). */
int fj_engine_bind(const char *module, const char *const *names, void **fns, size_t n,
                   void **handle);

/* zlib-ng's native stream (zlib-ng.h, struct zng_stream_s). */
typedef struct fj_zng_stream {
    const uint8_t *next_in;
    uint32_t avail_in;
    size_t total_in;
    uint8_t *next_out;
    uint32_t avail_out;
    size_t total_out;
    const char *msg;
    void *state;
    void *(*zalloc)(void *, unsigned int, unsigned int);
    void (*zfree)(void *, void *);
    void *opaque;
    int data_type;
    uint32_t adler;
    unsigned long reserved;
} fj_zng_stream;

#endif
