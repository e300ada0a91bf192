/* workers.h: a small fixed-size thread pool running C tasks in FIFO order.
 *
 * Plain pthreads, no Python: a task function must not touch Python objects unless it takes the GIL
 * itself (PyGILState_Ensure). Callers that wait on tasks which take the GIL must release the GIL
 * while waiting. Completion is tracked per task, so the owner decides the order in which results
 * are consumed (the codec writers emit blocks in submission order).
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

#endif
