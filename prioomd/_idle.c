/*
 * prioomd._idle: the C twin of prioomd/_idle_py.py (whose docstring is the
 * contract): sample /proc/meminfo adaptively and wait on the loop's fds with
 * the GIL released, back to Python only when an fd is ready, a sample is not
 * quiet or the caller's timeout passed.
 *
 * Why C: an idle wake-up in Python costs tens of microseconds of interpreter
 * natively and ~20x that under emulation, ten times a second; here it is one
 * pread(2) and one poll(2). No global state: every call owns its fds and
 * buffers and frees them on every path.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MEMINFO_BUF 8192 /* /proc/meminfo is ~1.5 KiB; what we need is in its first lines */
#define MAX_DIGITS 15    /* like the twin: larger values are not a kernel's */

typedef struct {
    double quiet_pct, floor_pct, swap_free_pct, mem_fill, swap_fill, poll_min, poll_max;
} Thresholds;

typedef struct {
    long long total, avail, swap_total, swap_free;
    double taken_at;
} Sample;

static double
monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* bytes.split()'s whitespace, apart from the newline that ends a line */
static int
is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The twin's parse_meminfo: 0 on success, -1 when MemTotal is missing or a value is bad.
 * The first line of each key counts; reading stops once all five are found. */
static int
parse_meminfo(const char *buf, size_t len, Sample *s)
{
    static const char *const keys[5] = {"MemTotal:", "MemAvailable:", "MemFree:",
                                        "SwapTotal:", "SwapFree:"};
    long long vals[5] = {-1, -1, -1, -1, -1};
    int found = 0;
    size_t i = 0;
    while (i < len && found < 5) { /* all five are in the first ~16 of ~55 lines */
        size_t eol = i;
        while (eol < len && buf[eol] != '\n')
            eol++;
        while (i < eol && is_space(buf[i]))
            i++;
        size_t k = i;
        while (k < eol && !is_space(buf[k]))
            k++;
        for (int key = 0; key < 5; key++) {
            size_t klen = strlen(keys[key]);
            if (vals[key] >= 0 || k - i != klen || memcmp(buf + i, keys[key], klen) != 0)
                continue; /* not this key, or seen already: the first one counts */
            size_t d = k;
            while (d < eol && is_space(buf[d]))
                d++;
            if (d == eol)
                break; /* no value: the line is not read, as in the twin */
            size_t start = d;
            long long v = 0;
            while (d < eol && buf[d] >= '0' && buf[d] <= '9')
                v = v * 10 + (buf[d++] - '0');
            if (d == start || d - start > MAX_DIGITS || (d < eol && !is_space(buf[d])))
                return -1;
            vals[key] = v * 1024;
            found++;
        }
        i = eol + 1;
    }
    if (vals[0] < 0)
        return -1;
    s->total = vals[0];
    s->avail = vals[1] >= 0 ? vals[1] : (vals[2] > 0 ? vals[2] : 0);
    s->swap_total = vals[3] > 0 ? vals[3] : 0;
    s->swap_free = vals[4] > 0 ? vals[4] : 0;
    return 0;
}

static int
quiet(const Sample *s, const Thresholds *t)
{
    return s->total > 0 && (double)s->avail * 100.0 >= (double)s->total * t->quiet_pct;
}

/* detect.next_poll_interval, operation for operation (the tests compare exactly). */
static double
next_interval(const Sample *cur, const Thresholds *t, const Sample *prev)
{
    double total = cur->total > 0 ? (double)cur->total : 0.0;
    double mem_room = (double)cur->avail - total * t->floor_pct / 100.0;
    double swap_room = 0.0;
    if (cur->swap_total > 0) {
        swap_room = (double)cur->swap_free - (double)cur->swap_total * t->swap_free_pct / 100.0;
        if (swap_room < 0.0)
            swap_room = 0.0;
    }
    double falling = 0.0;
    if (prev != NULL && cur->taken_at > prev->taken_at) {
        long long drop = prev->avail + prev->swap_free - cur->avail - cur->swap_free;
        falling = (double)(drop > 0 ? drop : 0) / (cur->taken_at - prev->taken_at);
    }
    if (mem_room < 0.0)
        mem_room = 0.0;
    double seconds = mem_room / fmax(t->mem_fill, falling) + swap_room / fmax(t->swap_fill,
                                                                              falling);
    return fmin(fmax(seconds, t->poll_min), t->poll_max);
}

static int
sample(int fd, char *buf, Sample *s, double now)
{
    ssize_t n = pread(fd, buf, MEMINFO_BUF, 0);
    if (n <= 0 || parse_meminfo(buf, (size_t)n, s) != 0)
        return -1;
    s->taken_at = now;
    return 0;
}

static int
parse_thresholds(PyObject *obj, Thresholds *t)
{
    return PyArg_ParseTuple(obj, "ddddddd;thresholds must be 7 numbers", &t->quiet_pct,
                            &t->floor_pct, &t->swap_free_pct, &t->mem_fill, &t->swap_fill,
                            &t->poll_min, &t->poll_max);
}

static int
parse_sample(PyObject *obj, Sample *s)
{
    return PyArg_ParseTuple(obj, "LLLLd;a sample is (total, available, swap_total, "
                            "swap_free, taken_at)", &s->total, &s->avail, &s->swap_total,
                            &s->swap_free, &s->taken_at);
}

static PyObject *
sample_tuple(const Sample *s)
{
    return Py_BuildValue("(LLLLd)", s->total, s->avail, s->swap_total, s->swap_free,
                         s->taken_at);
}

static PyObject *
idle_next_interval(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *cur_o, *t_o, *prev_o;
    Sample cur, prev;
    Thresholds t;
    if (!PyArg_ParseTuple(args, "OOO:next_interval", &cur_o, &t_o, &prev_o))
        return NULL;
    if (!parse_sample(cur_o, &cur) || !parse_thresholds(t_o, &t))
        return NULL;
    if (prev_o != Py_None && !parse_sample(prev_o, &prev))
        return NULL;
    return PyFloat_FromDouble(next_interval(&cur, &t, prev_o == Py_None ? NULL : &prev));
}

/* Copy the (fd, mask) pairs; NULL with an exception set on bad input. */
static struct pollfd *
parse_fds(PyObject *fds_o, Py_ssize_t *n_out)
{
    PyObject *seq = PySequence_Fast(fds_o, "fds must be a sequence of (fd, mask)");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    struct pollfd *p = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof *p);
    if (p == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int fd, mask;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ii;fds must be (fd, mask)",
                              &fd, &mask)) {
            PyMem_Free(p);
            Py_DECREF(seq);
            return NULL;
        }
        if (fd < 0) {
            PyErr_SetString(PyExc_ValueError, "fds must be (fd, mask) with fd >= 0");
            PyMem_Free(p);
            Py_DECREF(seq);
            return NULL;
        }
        p[i].fd = fd;
        p[i].events = (short)mask;
    }
    Py_DECREF(seq);
    *n_out = n;
    return p;
}

static PyObject *
idle_wait(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *fds_o, *timeout_o, *path_o, *t_o;
    double first_sleep;
    Thresholds t;
    if (!PyArg_ParseTuple(args, "OOO&Od:wait", &fds_o, &timeout_o, PyUnicode_FSConverter,
                          &path_o, &t_o, &first_sleep))
        return NULL;
    long long timeout_ms = -1;
    if (timeout_o != Py_None) {
        timeout_ms = PyLong_AsLongLong(timeout_o);
        if (timeout_ms == -1 && PyErr_Occurred()) {
            Py_DECREF(path_o);
            return NULL;
        }
    }
    if (!parse_thresholds(t_o, &t)) {
        Py_DECREF(path_o);
        return NULL;
    }
    Py_ssize_t nfds = 0;
    struct pollfd *pfds = parse_fds(fds_o, &nfds);
    char *buf = pfds ? PyMem_Malloc(MEMINFO_BUF) : NULL;
    if (pfds == NULL || buf == NULL) {
        PyMem_Free(pfds);
        Py_DECREF(path_o);
        return pfds ? PyErr_NoMemory() : NULL;
    }

    Sample last, cur;
    int have_last = 0, crossed = 0, nready = 0, err = 0;
    int mfd;
    Py_BEGIN_ALLOW_THREADS
    mfd = open(PyBytes_AS_STRING(path_o), O_RDONLY | O_CLOEXEC);
    double now = monotonic_s();
    double deadline = timeout_ms < 0 ? INFINITY : now + (double)timeout_ms / 1000.0;
    double next_sample = now + (first_sleep > 0.0 ? first_sleep : 0.0);
    for (;;) {
        double wait_s = fmin(next_sample, deadline) - now;
        int wait_ms = wait_s <= 0.0 ? 0 : (wait_s > 3600.0 ? 3600000 : (int)ceil(wait_s * 1000));
        nready = poll(pfds, (nfds_t)nfds, wait_ms);
        if (nready < 0) {
            if (errno != EINTR) {
                err = errno;
                break;
            }
            /* a signal: its handler already wrote to the loop's wakeup fd */
            nready = 0;
            Py_BLOCK_THREADS
            int bad = PyErr_CheckSignals();
            Py_UNBLOCK_THREADS
            if (bad) {
                err = -1;
                break;
            }
        }
        if (nready > 0)
            break;
        now = monotonic_s();
        if (now >= deadline)
            break;
        if (now < next_sample)
            continue;
        if (mfd < 0 || sample(mfd, buf, &cur, now) != 0) {
            crossed = 1;
            have_last = 0;
            break;
        }
        if (!quiet(&cur, &t)) {
            crossed = 1;
            last = cur;
            have_last = 1;
            break;
        }
        next_sample = now + next_interval(&cur, &t, have_last ? &last : NULL);
        last = cur;
        have_last = 1;
    }
    if (mfd >= 0)
        close(mfd);
    Py_END_ALLOW_THREADS
    Py_DECREF(path_o);
    PyMem_Free(buf);

    if (err != 0) {
        PyMem_Free(pfds);
        if (err > 0) {
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
        }
        return NULL;
    }
    PyObject *ready = PyList_New(0);
    for (Py_ssize_t i = 0; ready != NULL && nready > 0 && i < nfds; i++) {
        if (pfds[i].revents == 0)
            continue;
        PyObject *pair = Py_BuildValue("(ii)", pfds[i].fd, (int)(unsigned short)pfds[i].revents);
        if (pair == NULL || PyList_Append(ready, pair) != 0)
            Py_CLEAR(ready);
        Py_XDECREF(pair);
    }
    PyMem_Free(pfds);
    if (ready == NULL)
        return NULL;
    PyObject *last_o = have_last ? sample_tuple(&last) : Py_NewRef(Py_None);
    if (last_o == NULL) {
        Py_DECREF(ready);
        return NULL;
    }
    return Py_BuildValue("(NNO)", ready, last_o, crossed ? Py_True : Py_False);
}

PyDoc_STRVAR(wait_doc,
"wait(fds, timeout_ms, meminfo_path, thresholds, first_sleep_s) -> (ready, last, crossed)\n\n"
"See prioomd._idle_py.wait: the same contract.");
PyDoc_STRVAR(next_interval_doc,
"next_interval(cur, thresholds, prev) -> float\n\n"
"See prioomd._idle_py.next_interval: detect.next_poll_interval on tuples.");

static PyMethodDef idle_methods[] = {
    {"wait", idle_wait, METH_VARARGS, wait_doc},
    {"next_interval", idle_next_interval, METH_VARARGS, next_interval_doc},
    {NULL, NULL, 0, NULL},
};

static PyModuleDef_Slot idle_slots[] = {
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc, "C twin of prioomd._idle_py: the same wait(), without the GIL.");

static struct PyModuleDef idle_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "prioomd._idle",
    .m_doc = module_doc,
    .m_size = 0,
    .m_methods = idle_methods,
    .m_slots = idle_slots,
};

PyMODINIT_FUNC
PyInit__idle(void)
{
    return PyModuleDef_Init(&idle_module);
}
