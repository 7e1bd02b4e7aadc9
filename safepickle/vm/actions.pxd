# Cython declarations that augment actions.py when setup.py compiles it (as
# safepickle.vm._actions_c).  The .py stays plain Python; this only gives the
# per-container fill loop C indices.  Keep in step with fill_dict's signature.
import cython


@cython.locals(stop=Py_ssize_t, i=Py_ssize_t, chunk=Py_ssize_t)
cpdef fill_dict(ctx, dict d, list items, start)
