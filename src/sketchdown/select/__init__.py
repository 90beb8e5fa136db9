"""SketchyNetV2's canvas selector: policies (``policy``), the frozen student's reward bank (``bank``), REINFORCE
and the reference points (``reinforce``), the ``sketchdown select`` run (``runner``) and inference (``pipeline``)."""
