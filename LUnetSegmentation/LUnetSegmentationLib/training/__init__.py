"""The lab: data, augmentation, training, evaluation and the synthetic-data generator.

Not shipped in the Slicer extension (it cannot run there: it needs the datasets, configs/ and
the repository's scripts). Use the source install: see the README's "Training".

    data                Decathlon-format data: find, download, read, cache
    cache               the preprocessed cache and its train/validation split
    augment             batched torch augmentation for crops
    train               training on crops (Dice + cross-entropy), resumable
    synth               synthetic MRI from label maps (pure torch)
    synthetic_heads     whole synthetic heads (numpy + SimpleITK) for evaluation
    synth_train         training the whole-hippocampus model on synthetic heads
    synth_pathology     atrophy, growth, cavities and lesions on synthetic label maps
    localizer_synth     synthetic whole heads on the localizer's 4 mm grid
    localizer_train     training the learned localizer
    resumable           checkpoints of time-budgeted training runs
    evaluate            Dice and HD95 on labelled Decathlon crops
    evaluate_wholehead  per-side Dice, HD95 and volume ratio on whole heads
    metrics             Dice and HD95
    acquisition         coarser voxels, thick slices and crops of a scan, for evaluation
"""
