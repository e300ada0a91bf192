/* workers.h: a small fixed-size thread pool running C tasks in FIFO order, and the interruptible
 * waits of the calling thread.
 *
 * The pool is plain pthreads: a task function must not touch Python objects unless it takes the
 * GIL itself (PyGILState_Ensure). Callers that wait on tasks which take the GIL must release the
 * GIL while waiting. Completion is tracked per task, so the owner decides the order in which
 * results are consumed (the codec writers emit blocks in submission order).
 *
 * Interrupts (fj_check_interrupt, fj_wait_interruptible): every place where the calling thread
 * waits or works with the GIL released does so in slices of at most ~FJ_WAIT_TICK_MS and calls
 * fj_check_interrupt between them, so a SIGINT (or any Python signal handler that raises) is
 * answered while workers compress or decompress. On an error the caller's usual error path runs
 * (it cancels the workers, frees their buffers; the Python layer removes a dump's temporary).
 */
#ifndef FJ_WORKERS_H
#define FJ_WORKERS_H

#include <stddef.h>

typedef struct fj_task fj_task;
struct fj_task {
    void (*fn)(fj_task *task); /* runs on a worker thread */
    fj_task *next;             /* queue link (pool-private) */
    int state;                 /* pool-private: FJ_TASK_IDLE / QUEUED / RUNNING / DONE */
};

enum { FJ_TASK_IDLE = 0, FJ_TASK_QUEUED, FJ_TASK_RUNNING, FJ_TASK_DONE };

typedef struct fj_pool fj_pool;

/* Number of CPUs this process may run on (sched_getaffinity), at least 1. */
int fj_usable_cpus(void);

/* Start `nthreads` (>= 1) workers. NULL on failure (errno set); no Python exception is set. */
fj_pool *fj_pool_new(int nthreads);
/* Queue a task (its state must not be QUEUED or RUNNING). Never blocks for long. */
void fj_pool_submit(fj_pool *pool, fj_task *task);
/* Block until `task` is DONE (returns at once for IDLE or DONE tasks). Call without the GIL. */
void fj_pool_wait(fj_pool *pool, fj_task *task);
/* Non-blocking: 1 if the task is DONE (or IDLE), 0 if queued or running. */
int fj_pool_is_done(fj_pool *pool, fj_task *task);
/* Remove every queued task (its state becomes IDLE; it never runs) and wait until no task is
 * running. Returns the number of tasks removed. Call without the GIL. */
size_t fj_pool_cancel_all(fj_pool *pool);
/* Cancel queued tasks, wait for running ones, join the threads, free. NULL is a no-op. Call
 * without the GIL. */
void fj_pool_free(fj_pool *pool);

/* ----- interrupts (GIL held on entry and exit; defined with the Python API in workers.c) ----- */
#define FJ_WAIT_TICK_MS 100
/* Run pending signal handlers: PyErr_CheckSignals(), which does so only in the main thread of the
 * main interpreter and returns 0 elsewhere (other threads keep working as before). 0, or -1 with
 * the handler's exception (KeyboardInterrupt) set. */
int fj_check_interrupt(void);
/* Readers deliver the bytes they made before an error and raise it on the next call ("deferred"),
 * but a deferred error is lost when no next call comes (the pickle ended in those bytes). An
 * interrupt must never be deferred: a reader takes fj_interrupt_mark() on entry and, before
 * deferring the error that is set, asks fj_error_is_urgent(mark): 1 when a signal handler raised
 * during the call (fj_check_interrupt failed since the mark) or the error is not an Exception
 * (KeyboardInterrupt, SystemExit: raised by Python code the call ran, e.g. a file's read()).
 * Urgent errors are raised at once and the bytes made are dropped. GIL held. */
unsigned long fj_interrupt_mark(void);
int fj_error_is_urgent(unsigned long mark);
/* The same for an error already fetched (its type; NULL: none). */
int fj_exc_is_urgent(struct _object *exc_type, unsigned long mark);
/* PyErr_Clear() for an optional step that failed (fall back to another way), except when the
 * error is urgent in the sense above: then it stays set and -1 is returned. */
int fj_clear_unless_urgent(unsigned long mark);
/* Wait until `task` is DONE with the GIL released, waking every FJ_WAIT_TICK_MS to take the GIL
 * and call fj_check_interrupt. 0 when done; -1 with the exception set after cancelling the pool
 * (queued tasks dropped, running ones waited for, GIL released), so no task of the pool runs
 * when it returns. */
int fj_wait_interruptible(fj_pool *pool, fj_task *task);
/* Like fj_pool_wait with a timeout: 1 if the task is DONE (or IDLE), 0 after `ms` milliseconds. */
int fj_pool_timedwait(fj_pool *pool, fj_task *task, int ms);

#endif
