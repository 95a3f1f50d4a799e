/*
 * prioomd._select: the C twin of prioomd/_select_py.py.
 *
 * Same function, same contract, same results and exceptions: the docstring of
 * _select_py.py is the contract, this file only makes it fast. Numbers in,
 * indices out: no I/O, no logging, no strings beyond error messages, no global
 * mutable state. Every call owns all the memory it uses and frees it on every
 * path, so the module is re-entrant; the walk itself runs with the GIL
 * released, on private copies of the inputs.
 *
 * Layout (all int64, one array per field, built in O(n + tasks)):
 *   kid_off/kids  children of each node in creation order (CSR)
 *   pos/end       pre-order positions (children in creation order): the
 *                 subtree of u is the positions pos[u] .. end[u]-1
 *   toff/ptask    tasks sorted by (pre-order position of their node, index):
 *                 the tasks of the subtree of u are ptask[toff[pos[u]] .. toff[end[u]])
 *   nr            css->nr_procs: live tasks in the subtree
 *   skip          num_oom_skip, valid for one selection; the nodes it touched
 *                 are listed in `touched` and zeroed at the end (the kernel's
 *                 reset_list)
 *   counted       generation stamp: task j was counted unkillable in the
 *                 current selection iff counted[j] == gen
 *
 * One deliberate difference in how (not what) is computed. The reference adds
 * 1 to the task's cgroup and every ancestor for each unkillable task the scan
 * counts. Here the scan only counts them, and only when it ends without a
 * pick or an abort (otherwise the selection is over and the counters are never
 * read) is the count added to the victim and its ancestors, once. The cgroups
 * strictly inside the victim's subtree miss their share, but no walk of this
 * selection reads them again: after such a scan every live task of the
 * subtree has been counted (once, or once more in kernel mode), so
 * skip[victim] >= nr[victim], the victim stays exhausted for the rest of the
 * selection (skip only grows) and the walk never descends through it. Every
 * counter the walk does read is the reference's; the cost of a scan is
 * O(subtree + depth) instead of O(unkillable tasks x depth).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* Task states and statuses: the values of _select_py.py. */
#define KILLABLE 0
#define UNKILLABLE 1
#define DYING 2
#define GONE 3 /* private: picked by an earlier selection of this call */

#define STATUS_OK 0
#define STATUS_NONE 1
#define STATUS_ABORT 2

#define MAX_PRIORITY 12                  /* MEMCG_OOM_PRIORITY, include/linux/memcontrol.h */
#define PRIO_SENTINEL (MAX_PRIORITY + 1) /* DEF_PRIORITY + 1 in the kernel's walk */

typedef struct {
    int64_t victim;
    int64_t task;
} Candidate;

typedef struct {
    Py_ssize_t n, t;
    int kernel_compat;
    /* inputs, copied */
    int64_t *parent, *priority, *usage;
    int64_t *task_node, *task_state, *task_badness, *task_start;
    /* tree */
    int64_t *kid_off, *kids, *pos, *end, *toff, *ptask;
    /* per-selection state */
    int64_t *nr, *skip, *touched, *counted;
    Py_ssize_t ntouched;
    int64_t gen;
    /* result */
    Candidate *cand;
} Walk;

static void
walk_free(Walk *w)
{
    int64_t **arrays[] = {
        &w->parent, &w->priority, &w->usage, &w->task_node, &w->task_state,
        &w->task_badness, &w->task_start, &w->kid_off, &w->kids, &w->pos,
        &w->end, &w->toff, &w->ptask, &w->nr, &w->skip, &w->touched, &w->counted,
    };
    for (size_t i = 0; i < sizeof(arrays) / sizeof(arrays[0]); i++) {
        PyMem_Free(*arrays[i]);
        *arrays[i] = NULL;
    }
    PyMem_Free(w->cand);
    w->cand = NULL;
}

/* PyMem_New with room for `extra` more slots and never a zero-size request. */
static int64_t *
new_i64(Py_ssize_t count, Py_ssize_t extra)
{
    if (count > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(int64_t) - extra - 1)
        return NULL;
    return PyMem_New(int64_t, (size_t)(count + extra + 1));
}

/* ---------------------------------------------------------------- input */

/* A new reference to a list or tuple with the items of obj (a sequence). */
static PyObject *
as_fast(PyObject *obj, const char *name)
{
    if (!PySequence_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "%s: sequence of integers expected, got %s", name,
                     Py_TYPE(obj)->tp_name);
        return NULL;
    }
    return PySequence_Fast(obj, name);
}

/* _check_int64: exact ints (subclasses allowed, bool not) in [lo, INT64_MAX]. */
static int
load_int64(PyObject *fast, const char *name, int64_t lo, int64_t *out)
{
    Py_ssize_t len = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);

    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *v = items[i];
        if (!PyLong_Check(v) || PyBool_Check(v)) {
            PyObject *tname = PyType_GetName(Py_TYPE(v));
            if (tname != NULL) {
                PyErr_Format(PyExc_TypeError, "%s: integers expected, got %U", name, tname);
                Py_DECREF(tname);
            }
            return -1;
        }
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred())
            return -1;
        if (overflow != 0 || x < lo) {
            Py_INCREF(v); /* str() of a subclass may run code that mutates the list */
            PyErr_Format(PyExc_ValueError, "%s: value %S out of range", name, v);
            Py_DECREF(v);
            return -1;
        }
        out[i] = (int64_t)x;
    }
    return 0;
}

/* The checks of _validate after the per-value ones, in the same order. */
static int
check_structure(const Walk *w)
{
    if (w->parent[0] != -1) {
        PyErr_SetString(PyExc_ValueError, "parent[0] must be -1 (node 0 is the domain root)");
        return -1;
    }
    for (Py_ssize_t i = 1; i < w->n; i++) {
        if (w->parent[i] < 0 || w->parent[i] >= i) {
            PyErr_Format(PyExc_ValueError, "parent[%zd] = %lld: must be in [0, %zd)", i,
                         (long long)w->parent[i], i);
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < w->n; i++) {
        if (w->priority[i] < 0 || w->priority[i] > MAX_PRIORITY) {
            PyErr_Format(PyExc_ValueError, "priority[%zd] = %lld: must be in 0..%d", i,
                         (long long)w->priority[i], MAX_PRIORITY);
            return -1;
        }
    }
    for (Py_ssize_t j = 0; j < w->t; j++) {
        if (w->task_node[j] < 0 || w->task_node[j] >= w->n) {
            PyErr_Format(PyExc_ValueError, "task_node[%zd] = %lld: no such node", j,
                         (long long)w->task_node[j]);
            return -1;
        }
        int64_t s = w->task_state[j];
        if (s != KILLABLE && s != UNKILLABLE && s != DYING) {
            PyErr_Format(PyExc_ValueError, "task_state[%zd] = %lld: unknown state", j,
                         (long long)s);
            return -1;
        }
    }
    return 0;
}

/* ----------------------------------------------------------- tree setup */

/* Children, pre-order, subtree ranges, tasks by position, nr_procs: O(n + t). */
static void
build(Walk *w)
{
    const Py_ssize_t n = w->n, t = w->t;
    const int64_t *parent = w->parent;
    int64_t *kid_off = w->kid_off, *kids = w->kids, *pos = w->pos, *end = w->end;
    int64_t *toff = w->toff, *ptask = w->ptask, *nr = w->nr;
    int64_t *cursor = w->skip;   /* scratch, zeroed again below */
    int64_t *stack = w->touched; /* scratch: empty between selections */

    /* Children in creation order: parent[i] < i, so filling by increasing i
     * lists every parent's children oldest first. */
    memset(kid_off, 0, (size_t)(n + 1) * sizeof(int64_t));
    for (Py_ssize_t i = 1; i < n; i++)
        kid_off[parent[i] + 1]++;
    for (Py_ssize_t u = 0; u < n; u++)
        kid_off[u + 1] += kid_off[u];
    memcpy(cursor, kid_off, (size_t)n * sizeof(int64_t));
    for (Py_ssize_t i = 1; i < n; i++)
        kids[cursor[parent[i]]++] = i;

    /* Pre-order, iteratively: each node is pushed exactly once. */
    Py_ssize_t sp = 0, k = 0;
    stack[sp++] = 0;
    while (sp > 0) {
        int64_t u = stack[--sp];
        pos[u] = k++;
        for (int64_t c = kid_off[u + 1] - 1; c >= kid_off[u]; c--)
            stack[sp++] = kids[c];
    }

    /* Subtree sizes (descendants have larger indices), then end = pos + size. */
    for (Py_ssize_t u = 0; u < n; u++)
        end[u] = 1;
    for (Py_ssize_t i = n - 1; i >= 1; i--)
        end[parent[i]] += end[i];
    for (Py_ssize_t u = 0; u < n; u++)
        end[u] += pos[u];

    /* Tasks grouped by the pre-order position of their node, index order within. */
    memset(toff, 0, (size_t)(n + 1) * sizeof(int64_t));
    for (Py_ssize_t j = 0; j < t; j++)
        toff[pos[w->task_node[j]] + 1]++;
    for (Py_ssize_t p = 0; p < n; p++)
        toff[p + 1] += toff[p];
    memcpy(cursor, toff, (size_t)n * sizeof(int64_t));
    for (Py_ssize_t j = 0; j < t; j++)
        ptask[cursor[pos[w->task_node[j]]]++] = j;

    /* nr_procs: tasks attached to u, then summed up the tree. */
    memset(nr, 0, (size_t)n * sizeof(int64_t));
    for (Py_ssize_t j = 0; j < t; j++)
        nr[w->task_node[j]]++;
    for (Py_ssize_t i = n - 1; i >= 1; i--)
        nr[parent[i]] += nr[i];

    memset(w->skip, 0, (size_t)n * sizeof(int64_t));
    memset(w->counted, 0, (size_t)t * sizeof(int64_t));
    w->ntouched = 0;
    w->gen = 0;
}

/* ------------------------------------------------------------------ walk */

static inline void
add_skip(Walk *w, int64_t u, int64_t k)
{
    if (w->skip[u] == 0) /* k >= 1: a node goes from 0 to positive only once */
        w->touched[w->ntouched++] = u;
    w->skip[u] += k;
}

/* do_mem_cgroup_account_oom_skip with a count: u and every ancestor. */
static void
account_skip(Walk *w, int64_t u, int64_t k)
{
    for (; u != -1; u = w->parent[u])
        add_skip(w, u, k);
}

/* The per-level rule: a qualifying child (priority p, usage u) beats the best so
 * far (none: best == -1, best_prio the sentinel) by a lower priority, or at equal
 * priority by a strictly larger usage (equal usage keeps the older sibling). */
static inline int
child_beats(int64_t p, int64_t u, int64_t best_prio, int64_t best, const int64_t *usage)
{
    return p < best_prio || (p == best_prio && u > usage[best]);
}

/* mem_cgroup_select_victim_cgroup: descend into the lowest priority. */
static int64_t
victim_cgroup(const Walk *w)
{
    const int64_t *nr = w->nr, *skip = w->skip, *prio = w->priority, *usage = w->usage;
    int64_t victim = -1, node = 0;

    while (node != -1) {
        if (nr[node] <= skip[node])
            break;
        victim = node;
        int64_t best = -1, best_prio = PRIO_SENTINEL;
        for (int64_t k = w->kid_off[node]; k < w->kid_off[node + 1]; k++) {
            int64_t c = w->kids[k];
            if (nr[c] > skip[c] && child_beats(prio[c], usage[c], best_prio, best, usage)) {
                best = c;
                best_prio = prio[c];
            }
        }
        node = best;
    }
    return victim;
}

/* The scan's rule: killable task j beats the pick so far (none: -1) by a higher
 * badness, at equal badness by a later or equal start (the later in scan order). */
static inline int
task_beats(int64_t j, int64_t chosen, const int64_t *bad, const int64_t *start)
{
    return chosen == -1 || bad[j] > bad[chosen]
           || (bad[j] == bad[chosen] && start[j] >= start[chosen]);
}

/* One mem_cgroup_select_bad_process(): a status, and the pick when STATUS_OK. */
static int
select_once(Walk *w, Candidate *out)
{
    const int64_t *state = w->task_state, *bad = w->task_badness, *start = w->task_start;
    int status;

    w->gen++;
    for (;;) {
        int64_t victim = victim_cgroup(w);
        if (victim == -1) {
            status = STATUS_NONE;
            break;
        }

        /* Scan the victim subtree for the worst task. */
        int64_t chosen = -1, counted = 0;
        int aborted = 0;
        for (int64_t i = w->toff[w->pos[victim]]; i < w->toff[w->end[victim]]; i++) {
            int64_t j = w->ptask[i];
            switch (state[j]) {
            case KILLABLE:
                if (task_beats(j, chosen, bad, start))
                    chosen = j;
                break;
            case UNKILLABLE:
                if (w->kernel_compat || w->counted[j] != w->gen) {
                    w->counted[j] = w->gen;
                    counted++;
                }
                break;
            case DYING:
                aborted = 1;
                break;
            default: /* GONE */
                break;
            }
            if (aborted)
                break;
        }

        if (aborted || chosen != -1) {
            status = aborted ? STATUS_ABORT : STATUS_OK;
            out->victim = victim;
            out->task = chosen;
            break;
        }
        if (counted > 0)
            account_skip(w, victim, counted); /* see the top of this file */
        if (victim == 0) {
            status = STATUS_NONE;
            break;
        }
        if (w->kernel_compat) {
            account_skip(w, victim, 1); /* the over-count of spec section 6.1 */
        } else {
            int64_t missing = w->nr[victim] - w->skip[victim];
            if (missing > 0)
                account_skip(w, victim, missing);
        }
    }

    for (Py_ssize_t i = 0; i < w->ntouched; i++)
        w->skip[w->touched[i]] = 0;
    w->ntouched = 0;
    return status;
}

/* The ranking loop of select(); returns the status, fills w->cand. */
static int
rank(Walk *w, int64_t max_candidates, Py_ssize_t *ncand)
{
    build(w);
    *ncand = 0;
    for (;;) {
        Candidate c;
        int status = select_once(w, &c);
        if (status != STATUS_OK)
            return status;
        w->cand[(*ncand)++] = c;
        if (*ncand >= max_candidates)
            return STATUS_OK;
        /* The chosen process is gone for the next selection. */
        w->task_state[c.task] = GONE;
        for (int64_t u = w->task_node[c.task]; u != -1; u = w->parent[u])
            w->nr[u]--;
    }
}

/* ----------------------------------------------------------------- entry */

PyDoc_STRVAR(select_doc,
"select($module, /, parent, priority, usage, task_node, task_state, task_badness,\n"
"       task_start, kernel_compat=False, max_candidates=1)\n"
"--\n"
"\n"
"Rank victims as successive priority OOMs in this domain would kill them.\n"
"\n"
"Returns (status, [(victim_node, task), ...]). The contract is the docstring\n"
"of prioomd._select_py, whose select() gives identical results.");

static PyObject *
select_impl(PyObject *Py_UNUSED(module), PyObject *args, PyObject *kwargs)
{
    char *kwlist[] = {"parent", "priority", "usage", "task_node", "task_state",
                      "task_badness", "task_start", "kernel_compat", "max_candidates",
                      NULL};
    PyObject *obj[7];
    PyObject *fast[7] = {NULL};
    static const char *const names[7] = {"parent", "priority", "usage", "task_node",
                                         "task_state", "task_badness", "task_start"};
    /* Lower bounds of the per-value check, as in _validate. */
    static const int64_t lows[7] = {-1, INT64_MIN, 0, INT64_MIN, INT64_MIN, INT64_MIN,
                                    INT64_MIN};
    PyObject *compat_obj = Py_False, *maxc_obj = NULL, *list = NULL, *result = NULL;
    int64_t max_candidates = 1;
    Py_ssize_t cap, ncand = 0;
    int status;
    Walk w;
    memset(&w, 0, sizeof(w));
    int64_t **inputs[7] = {&w.parent, &w.priority, &w.usage, &w.task_node,
                           &w.task_state, &w.task_badness, &w.task_start};
    int64_t **work[] = {&w.kid_off, &w.kids, &w.pos, &w.end, &w.toff, &w.nr,
                        &w.skip, &w.touched};

    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOOOOO|OO:select", kwlist, &obj[0],
                                     &obj[1], &obj[2], &obj[3], &obj[4], &obj[5], &obj[6],
                                     &compat_obj, &maxc_obj))
        return NULL;

    /* Lengths first, in the order and with the short-circuits of _validate. */
    for (int a = 0; a < 7; a++) {
        fast[a] = as_fast(obj[a], names[a]);
        if (fast[a] == NULL)
            goto done;
        Py_ssize_t len = PySequence_Fast_GET_SIZE(fast[a]);
        if (a == 0) {
            w.n = len;
            if (w.n == 0) {
                PyErr_SetString(PyExc_ValueError,
                                "empty tree: node 0 must be the domain root");
                goto done;
            }
        } else if (a < 3 && len != w.n) {
            PyErr_SetString(PyExc_ValueError,
                            "parent, priority and usage must have the same length");
            goto done;
        } else if (a == 3) {
            w.t = len;
        } else if (a > 3 && len != w.t) {
            PyErr_SetString(PyExc_ValueError, "task arrays must have the same length");
            goto done;
        }
    }

    for (int a = 0; a < 7; a++) {
        /* A list converted earlier is the caller's own object, and converting a
         * later argument may have run Python code (a custom sequence) that
         * resized it: the lengths checked above must still hold. */
        Py_ssize_t len = a < 3 ? w.n : w.t;
        if (PySequence_Fast_GET_SIZE(fast[a]) != len) {
            PyErr_Format(PyExc_RuntimeError, "%s changed size during select()", names[a]);
            goto done;
        }
        *inputs[a] = new_i64(len, 0);
        if (*inputs[a] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        if (load_int64(fast[a], names[a], lows[a], *inputs[a]) < 0)
            goto done;
    }
    if (check_structure(&w) < 0)
        goto done;

    if (maxc_obj != NULL) {
        int overflow = 0;
        long long v = 0;
        if (PyLong_Check(maxc_obj)) {
            v = PyLong_AsLongLongAndOverflow(maxc_obj, &overflow);
            if (v == -1 && PyErr_Occurred())
                goto done;
        }
        if (!PyLong_Check(maxc_obj) || overflow < 0 || (overflow == 0 && v < 1)) {
            PyErr_SetString(PyExc_ValueError, "max_candidates must be >= 1");
            goto done;
        }
        max_candidates = overflow > 0 ? INT64_MAX : (int64_t)v;
    }
    w.kernel_compat = PyObject_IsTrue(compat_obj);
    if (w.kernel_compat < 0)
        goto done;

    /* Every pick removes a task, so there are at most t candidates. */
    cap = w.t < max_candidates ? w.t : (Py_ssize_t)max_candidates;
    for (size_t a = 0; a < sizeof(work) / sizeof(work[0]); a++) {
        *work[a] = new_i64(w.n, 1);
        if (*work[a] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    w.ptask = new_i64(w.t, 0);
    w.counted = new_i64(w.t, 0);
    w.cand = PyMem_New(Candidate, (size_t)cap + 1);
    if (w.ptask == NULL || w.counted == NULL || w.cand == NULL) {
        PyErr_NoMemory();
        goto done;
    }

    Py_BEGIN_ALLOW_THREADS
    status = rank(&w, max_candidates, &ncand);
    Py_END_ALLOW_THREADS

    list = PyList_New(ncand);
    if (list == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < ncand; i++) {
        PyObject *pair = Py_BuildValue("(LL)", (long long)w.cand[i].victim,
                                       (long long)w.cand[i].task);
        if (pair == NULL) {
            Py_DECREF(list);
            goto done;
        }
        PyList_SET_ITEM(list, i, pair);
    }
    result = Py_BuildValue("(iN)", status, list);

done:
    for (int a = 0; a < 7; a++)
        Py_XDECREF(fast[a]);
    walk_free(&w);
    return result;
}

/* ------------------------------------------------- the lazy walk's steps */

/* Converts k argument sequences of one common length into int64 arrays (*out[a],
 * PyMem-allocated, NULL on error), with the checks and messages of the Python
 * twin: every argument a sequence, the lengths equal (length_msg), then each
 * array's values in [lows[a], INT64_MAX]. Returns the length, or -1. */
static Py_ssize_t
load_arrays(int k, PyObject *const *objs, const char *const *names, const int64_t *lows,
            const char *length_msg, int64_t **out)
{
    PyObject *fast[3] = {NULL, NULL, NULL};
    Py_ssize_t len = -1, result = -1;

    for (int a = 0; a < k; a++) {
        fast[a] = as_fast(objs[a], names[a]);
        if (fast[a] == NULL)
            goto done;
        if (a == 0) {
            len = PySequence_Fast_GET_SIZE(fast[a]);
        } else if (PySequence_Fast_GET_SIZE(fast[a]) != len) {
            PyErr_SetString(PyExc_ValueError, length_msg);
            goto done;
        }
    }
    for (int a = 0; a < k; a++) {
        if (PySequence_Fast_GET_SIZE(fast[a]) != len) { /* resized by a later conversion */
            PyErr_Format(PyExc_RuntimeError, "%s changed size during the call", names[a]);
            goto done;
        }
        out[a] = new_i64(len, 0);
        if (out[a] == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        if (load_int64(fast[a], names[a], lows[a], out[a]) < 0)
            goto done;
    }
    result = len;
done:
    for (int a = 0; a < k; a++)
        Py_XDECREF(fast[a]);
    return result;
}

PyDoc_STRVAR(choose_child_doc,
"choose_child($module, priority, usage, /)\n"
"--\n"
"\n"
"One level of the walk: the index of the child it descends into, or -1.\n"
"The contract is the docstring of prioomd._select_py.choose_child.");

static PyObject *
choose_child_impl(PyObject *Py_UNUSED(module), PyObject *args)
{
    static const char *const names[2] = {"priority", "usage"};
    static const int64_t lows[2] = {INT64_MIN, 0};
    PyObject *objs[2];
    int64_t *arr[2] = {NULL, NULL};
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OO:choose_child", &objs[0], &objs[1]))
        return NULL;
    Py_ssize_t n = load_arrays(2, objs, names, lows,
                               "priority and usage must have the same length", arr);
    if (n < 0)
        goto done;
    const int64_t *prio = arr[0], *usage = arr[1];
    for (Py_ssize_t i = 0; i < n; i++) {
        if (prio[i] < 0 || prio[i] > MAX_PRIORITY) {
            PyErr_Format(PyExc_ValueError, "priority[%zd] = %lld: must be in 0..%d", i,
                         (long long)prio[i], MAX_PRIORITY);
            goto done;
        }
    }
    /* The inner loop of victim_cgroup() over children that all qualify. */
    int64_t best = -1, best_prio = PRIO_SENTINEL;
    for (Py_ssize_t c = 0; c < n; c++) {
        if (child_beats(prio[c], usage[c], best_prio, best, usage)) {
            best = c;
            best_prio = prio[c];
        }
    }
    result = PyLong_FromLongLong((long long)best);
done:
    PyMem_Free(arr[0]);
    PyMem_Free(arr[1]);
    return result;
}

PyDoc_STRVAR(pick_task_doc,
"pick_task($module, task_state, task_badness, task_start, /)\n"
"--\n"
"\n"
"The scan of the victim cgroup's subtree: (status, task).\n"
"The contract is the docstring of prioomd._select_py.pick_task.");

static PyObject *
pick_task_impl(PyObject *Py_UNUSED(module), PyObject *args)
{
    static const char *const names[3] = {"task_state", "task_badness", "task_start"};
    static const int64_t lows[3] = {INT64_MIN, INT64_MIN, INT64_MIN};
    PyObject *objs[3];
    int64_t *arr[3] = {NULL, NULL, NULL};
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "OOO:pick_task", &objs[0], &objs[1], &objs[2]))
        return NULL;
    Py_ssize_t t = load_arrays(3, objs, names, lows, "task arrays must have the same length",
                               arr);
    if (t < 0)
        goto done;
    const int64_t *state = arr[0], *bad = arr[1], *start = arr[2];
    for (Py_ssize_t j = 0; j < t; j++) {
        if (state[j] != KILLABLE && state[j] != UNKILLABLE && state[j] != DYING) {
            PyErr_Format(PyExc_ValueError, "task_state[%zd] = %lld: unknown state", j,
                         (long long)state[j]);
            goto done;
        }
    }
    /* The scan of select_once() over one victim subtree. */
    int status = STATUS_NONE;
    int64_t chosen = -1;
    for (Py_ssize_t j = 0; j < t; j++) {
        if (state[j] == DYING) {
            status = STATUS_ABORT;
            chosen = j;
            break;
        }
        if (state[j] == KILLABLE && task_beats(j, chosen, bad, start)) {
            status = STATUS_OK;
            chosen = j;
        }
    }
    result = Py_BuildValue("(iL)", status, (long long)chosen);
done:
    for (int a = 0; a < 3; a++)
        PyMem_Free(arr[a]);
    return result;
}

static PyMethodDef select_methods[] = {
    {"select", (PyCFunction)(void (*)(void))select_impl, METH_VARARGS | METH_KEYWORDS,
     select_doc},
    {"choose_child", (PyCFunction)choose_child_impl, METH_VARARGS, choose_child_doc},
    {"pick_task", (PyCFunction)pick_task_impl, METH_VARARGS, pick_task_doc},
    {NULL, NULL, 0, NULL},
};

static int
select_exec(PyObject *m)
{
    static const struct {
        const char *name;
        long value;
    } constants[] = {
        {"KILLABLE", KILLABLE},   {"UNKILLABLE", UNKILLABLE}, {"DYING", DYING},
        {"STATUS_OK", STATUS_OK}, {"STATUS_NONE", STATUS_NONE},
        {"STATUS_ABORT", STATUS_ABORT}, {"MAX_PRIORITY", MAX_PRIORITY},
    };
    for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++) {
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0)
            return -1;
    }
    return 0;
}

static PyModuleDef_Slot select_slots[] = {
    {Py_mod_exec, (void *)select_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

PyDoc_STRVAR(module_doc,
"C twin of prioomd._select_py: the same select(), choose_child(), pick_task() and\n"
"constants, faster.");

static struct PyModuleDef select_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "prioomd._select",
    .m_doc = module_doc,
    .m_size = 0,
    .m_methods = select_methods,
    .m_slots = select_slots,
};

PyMODINIT_FUNC
PyInit__select(void)
{
    return PyModuleDef_Init(&select_module);
}
