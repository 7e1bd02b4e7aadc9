# Cython declarations that augment actions.py when setup.py compiles it (as
# safepickle.vm._actions_c).  The .py stays plain Python; this only gives the
# per-container fill loops C indices, and lets the compiled engine call them
# at C level.  Keep in step with the signatures of fill_dict and fill_set.
import cython


@cython.locals(stop=Py_ssize_t, i=Py_ssize_t, chunk=Py_ssize_t)
cpdef fill_dict(ctx, dict d, list items, start)


cpdef fill_set(ctx, set s, list items)
