import pytest


@pytest.fixture(scope="session")
def fonts_loaded(tmp_path_factory):
    """matplotlib keeps its font files open once loaded: load them before the
    per-test descriptor check (tests/conftest.py) starts counting."""
    from scenarios.report import pyplot
    plt = pyplot()
    figure, axes = plt.subplots()
    axes.set_title("warm-up")
    figure.savefig(tmp_path_factory.mktemp("warm") / "warm.png")
    plt.close(figure)
