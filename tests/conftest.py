"""Suite-wide set-up: run-time checking of the type and shape annotations of the core package.

jaxtyping's import hook wraps every function and dataclass of ``panst3r_splat.core`` with beartype (through
``_typecheck.checker``) as it is imported, so a shape that contradicts an annotation fails the test that passed it.
It must run before anything imports the package, hence here. Classes that coerce their inputs on construction opt
out with ``@no_type_check`` (they validate themselves).
"""

from jaxtyping import install_import_hook

install_import_hook(["panst3r_splat.core"], "_typecheck.checker")
