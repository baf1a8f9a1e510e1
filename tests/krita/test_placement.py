from sine_krita.placement import floating_frame


def test_a_floated_docker_grows_to_its_panel_within_the_screen():
    # Krita floats it at its docked size (262x116 in a crowded column of an 800x600 screen)
    assert floating_frame((538, 454, 262, 116), (365, 700), (0, 0, 800, 600)) == (435, 0, 365, 600)
    assert floating_frame((10, 20, 262, 116), (300, 400), (0, 0, 1024, 600)) == (10, 20, 300, 400)


def test_a_floated_docker_never_shrinks_and_stays_on_its_screen():
    assert floating_frame((-50, 580, 500, 300), (300, 200), (0, 0, 1024, 600)) == (0, 300, 500, 300)
    assert floating_frame((2100, 10, 300, 200), (300, 200), (1024, 0, 1280, 1024)) == (2004, 10, 300, 200)
