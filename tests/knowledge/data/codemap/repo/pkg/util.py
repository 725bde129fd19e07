OUTSIDE = "util-body-never-in-the-pack"


def helper():
    return OUTSIDE
