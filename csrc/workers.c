/* workers.c: fixed-size pthread pool with a FIFO queue and per-task completion (see workers.h). */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

struct fj_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;    /* signalled when a task is queued or on shutdown */
    pthread_cond_t done;    /* broadcast when a task finishes */
    fj_task *head, *tail;   /* FIFO of queued tasks */
    int running;            /* tasks currently executing */
    int shutdown;
    int nthreads;           /* threads successfully started */
    pthread_t *threads;
};

int
fj_usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) {
            return n;
        }
    }
    return 1;
}

static void *
run_worker(void *arg)
{
    fj_pool *pool = (fj_pool *)arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->head == NULL && !pool->shutdown) {
            pthread_cond_wait(&pool->work, &pool->lock);
        }
        if (pool->head == NULL) { /* shutdown and nothing left */
            break;
        }
        fj_task *t = pool->head;
        pool->head = t->next;
        if (pool->head == NULL) {
            pool->tail = NULL;
        }
        t->next = NULL;
        t->state = FJ_TASK_RUNNING;
        pool->running++;
        pthread_mutex_unlock(&pool->lock);
        t->fn(t);
        pthread_mutex_lock(&pool->lock);
        t->state = FJ_TASK_DONE;
        pool->running--;
        pthread_cond_broadcast(&pool->done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

fj_pool *
fj_pool_new(int nthreads)
{
    if (nthreads < 1) {
        nthreads = 1;
    }
    fj_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) {
        return NULL;
    }
    pool->threads = calloc((size_t)nthreads, sizeof(pthread_t));
    if (pool->threads == NULL) {
        free(pool);
        errno = ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    /* `done` is waited on with a timeout (fj_pool_timedwait): on the monotonic clock */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&pool->done, &attr);
    pthread_condattr_destroy(&attr);
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&pool->threads[i], NULL, run_worker, pool);
        if (rc != 0) {
            if (pool->nthreads == 0) {
                fj_pool_free(pool);
                errno = rc;
                return NULL;
            }
            break; /* run with the threads we got */
        }
        pool->nthreads++;
    }
    return pool;
}

void
fj_pool_submit(fj_pool *pool, fj_task *task)
{
    pthread_mutex_lock(&pool->lock);
    task->next = NULL;
    task->state = FJ_TASK_QUEUED;
    if (pool->tail != NULL) {
        pool->tail->next = task;
    }
    else {
        pool->head = task;
    }
    pool->tail = task;
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);
}

void
fj_pool_wait(fj_pool *pool, fj_task *task)
{
    pthread_mutex_lock(&pool->lock);
    while (task->state == FJ_TASK_QUEUED || task->state == FJ_TASK_RUNNING) {
        pthread_cond_wait(&pool->done, &pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
}

int
fj_pool_timedwait(fj_pool *pool, fj_task *task, int ms)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    int done;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        done = !(task->state == FJ_TASK_QUEUED || task->state == FJ_TASK_RUNNING);
        if (done || pthread_cond_timedwait(&pool->done, &pool->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    if (!done) {
        done = !(task->state == FJ_TASK_QUEUED || task->state == FJ_TASK_RUNNING);
    }
    pthread_mutex_unlock(&pool->lock);
    return done;
}

/* Failed signal checks so far; changed only by the main thread with the GIL held (other threads
 * never run handlers), read by readers to tell an interrupt from their own errors. */
static unsigned long interrupts_raised;

int
fj_check_interrupt(void)
{
    /* Documented: "If the function is called from a non-main thread, or under a non-main Python
     * interpreter, it does nothing and returns 0". */
    if (PyErr_CheckSignals() < 0) {
        interrupts_raised++;
        return -1;
    }
    return 0;
}

unsigned long
fj_interrupt_mark(void)
{
    return interrupts_raised;
}

int
fj_exc_is_urgent(PyObject *exc_type, unsigned long mark)
{
    if (exc_type == NULL) {
        return 0;
    }
    return interrupts_raised != mark || !PyErr_GivenExceptionMatches(exc_type, PyExc_Exception);
}

int
fj_error_is_urgent(unsigned long mark)
{
    return fj_exc_is_urgent(PyErr_Occurred(), mark);
}

int
fj_clear_unless_urgent(unsigned long mark)
{
    if (fj_error_is_urgent(mark)) {
        return -1;
    }
    PyErr_Clear();
    return 0;
}

int
fj_wait_interruptible(fj_pool *pool, fj_task *task)
{
    for (;;) {
        int done;
        Py_BEGIN_ALLOW_THREADS
        done = fj_pool_timedwait(pool, task, FJ_WAIT_TICK_MS);
        Py_END_ALLOW_THREADS
        if (done) {
            return 0;
        }
        if (fj_check_interrupt() < 0) {
            Py_BEGIN_ALLOW_THREADS
            fj_pool_cancel_all(pool);
            Py_END_ALLOW_THREADS
            return -1;
        }
    }
}

int
fj_pool_is_done(fj_pool *pool, fj_task *task)
{
    pthread_mutex_lock(&pool->lock);
    int st = task->state;
    pthread_mutex_unlock(&pool->lock);
    return !(st == FJ_TASK_QUEUED || st == FJ_TASK_RUNNING);
}

size_t
fj_pool_cancel_all(fj_pool *pool)
{
    size_t n = 0;
    pthread_mutex_lock(&pool->lock);
    for (fj_task *t = pool->head; t != NULL;) {
        fj_task *next = t->next;
        t->next = NULL;
        t->state = FJ_TASK_IDLE;
        n++;
        t = next;
    }
    pool->head = pool->tail = NULL;
    while (pool->running > 0) {
        pthread_cond_wait(&pool->done, &pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    return n;
}

void
fj_pool_free(fj_pool *pool)
{
    if (pool == NULL) {
        return;
    }
    fj_pool_cancel_all(pool);
    pthread_mutex_lock(&pool->lock);
    pool->shutdown = 1;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++) {
        pthread_join(pool->threads[i], NULL);
    }
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->lock);
    free(pool->threads);
    free(pool);
}
