model = dict(type="MLPClassifier", in_features=64, hidden_dims=(256, 256), num_classes=10)
