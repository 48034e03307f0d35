"""Your own videos: decode, detect, track and align faces into the Aff-Wild2 layout, then predict per frame.

Everything here needs the ``video`` extra (``pip install 'affbench[video]'``); the core install never imports it.
"""
