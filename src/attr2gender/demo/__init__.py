"""``attr2gender demo``: a local web page where a person drops in a photo, sees why the model decided, and
edits the concepts (Gradio, the ``[demo]`` extra). ``session.py`` computes (no Gradio); ``page.py`` lays out."""
