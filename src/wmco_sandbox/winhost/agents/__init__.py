"""The node agents the SCM runs next to the kubelet: kube-proxy and hybrid-overlay-node."""
