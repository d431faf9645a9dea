"""Import paths kept for projects and notebooks written for Prism 0.2.x."""
