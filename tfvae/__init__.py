"""tfvae: variational autoencoders in TensorFlow/Keras 3 with TFP distributions.

The package is split by job (see README): ``config`` (typed run configuration),
``data`` (TFDS / IDX loaders, binarization, splits), ``networks`` (encoder and
decoder builders), ``distributions`` (posterior, priors, likelihood), ``models``
(the ``VAE`` and ``Autoencoder`` keras.Models), ``pca`` (probabilistic PCA),
``objectives`` (ELBO and importance-weighted bound), ``train``, ``evaluate``,
``quality`` (feature-classifier Fréchet distance), ``compare`` and ``plots``.

Importing ``tfvae`` itself is cheap: TensorFlow is imported only by the modules
that need it, so ``python cli.py --help`` answers quickly.
"""

__version__ = "0.1.0"
