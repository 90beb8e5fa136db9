"""SketchyNetV2's canvas selector: policies (``policy``), the frozen student's reward bank (``bank``), REINFORCE
and the reference points (``reinforce``) and the ``sketchdown select`` run (``runner``). At inference a policy is a
retriever's selector: ``sketchdown.load(student, selector=policy)`` (the retrieval package, which imports this
one, never the other way)."""
